"""The operations of the job module's pages: views call these, never the models directly."""
