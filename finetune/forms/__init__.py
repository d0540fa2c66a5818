"""Forms of the job module's pages."""
