// The playground (finetune/services/playground.py): a question is posted, then its answer
// asked for a few times a second while the inference worker writes it, the version's
// and the base model's side by side. Every word shown comes from the page
// (#playground-words), so it speaks the page's language.
(function () {
  "use strict";

  const root = document.querySelector("[data-testid=playground]");
  if (!root) return;
  const words = JSON.parse(document.getElementById("playground-words").textContent);
  const form = root.querySelector("form");
  const stateLine = root.querySelector("[data-testid=playground-state]");
  const history = form.querySelector("input[name=history]");
  const send = form.querySelector("[data-testid=send]");
  const kind = root.dataset.kind;
  const logs = {
    version: root.querySelector("[data-testid=answers-version]"),
    base: root.querySelector("[data-testid=answers-base]"),
  };
  const POLL_MS = 120;
  let turns = [];

  function bubble(side, role, text) {
    const item = document.createElement("div");
    item.className = `playground-turn ${role}`;
    item.textContent = text;
    logs[side].appendChild(item);
    return item;
  }

  function say(text, isError) {
    stateLine.textContent = text;
    stateLine.classList.toggle("error", Boolean(isError));
  }

  function errorsOf(answer) {
    return Object.values(answer.errors || {}).flat().join(" ");
  }

  async function follow(url, prompt, compare) {
    const shown = {};
    for (const side of Object.keys(logs)) {
      if (side === "base" && !compare) continue;
      if (kind === "chat") {
        bubble(side, "user", prompt);
        shown[side] = bubble(side, "assistant", "");
      } else {
        shown[side] = document.createElement("figure");
        shown[side].className = "playground-image";
        logs[side].prepend(shown[side]);
      }
    }
    for (;;) {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (!response.ok) { say(words.lost, true); return null; }
      const answer = await response.json();
      if (kind === "chat") {
        for (const side of Object.keys(shown)) {
          shown[side].textContent = answer.sides[side] || "";
          shown[side].classList.toggle("writing", !answer.done.includes(side) && answer.status === "running");
        }
      } else {
        for (const [side, src] of Object.entries(answer.image_urls || {})) {
          if (shown[side] && !shown[side].querySelector("img")) {
            const img = document.createElement("img");
            img.src = src;
            img.alt = prompt;
            const caption = document.createElement("figcaption");
            caption.textContent = `${words.seed} ${answer.seed} · ${prompt}`;
            shown[side].append(img, caption);
          }
        }
      }
      if (answer.status === "failed") { say(answer.error, true); return null; }
      if (answer.status === "done") { say(""); return answer; }
      say(answer.status_text);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const prompt = form.prompt.value.trim();
    if (!prompt) return;
    send.disabled = true;
    say(words.sending);
    history.value = JSON.stringify(turns);
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
      });
      const answer = await response.json();
      if (!response.ok) { say(errorsOf(answer) || words.lost, true); return; }
      const compare = form.compare.checked;
      const done = await follow(answer.state, prompt, compare);
      if (done && kind === "chat") {
        turns.push({ user: prompt, version: done.sides.version || "", base: done.sides.base || "" });
        form.prompt.value = "";
      }
    } catch (error) {
      say(words.lost, true);
    } finally {
      send.disabled = false;
    }
  });

  const reset = form.querySelector("[data-action=reset]");
  if (reset) {
    reset.addEventListener("click", () => {
      turns = [];
      for (const log of Object.values(logs)) log.replaceChildren();
      say("");
    });
  }
})();
