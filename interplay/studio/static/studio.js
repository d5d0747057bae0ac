// Interplay Studio: the little JavaScript it needs (no build step).
// 1. A form submits once: a double click does not send two judgements.
// 2. The talk page's catalogue search box fills the titles of a turn.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.submitted === "1") { event.preventDefault(); return; }
  form.dataset.submitted = "1";
  for (const b of form.querySelectorAll("button[type=submit]")) b.disabled = true;
});

function addTitle(list, title) {
  for (const input of list.querySelectorAll("input[name=title]")) if (input.value === title) return;
  const chip = document.createElement("span");
  chip.className = "chosen-title";
  chip.textContent = title + " ";
  const input = document.createElement("input");
  input.type = "hidden"; input.name = "title"; input.value = title;
  const remove = document.createElement("button");
  remove.type = "button"; remove.textContent = "×"; remove.title = "remove";
  remove.addEventListener("click", () => chip.remove());
  chip.append(input, remove);
  list.append(chip);
}

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("title-search");
  if (!box) return;
  const results = document.getElementById("title-results");
  const chosen = document.getElementById("chosen-titles");
  let timer = null;
  const search = async () => {
    const response = await fetch(box.dataset.url + "?q=" + encodeURIComponent(box.value));
    if (!response.ok) return;
    const items = await response.json();
    results.replaceChildren();
    for (const item of items) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = item.title;
      button.title = (item.attributes || []).join(", ");
      button.addEventListener("click", () => addTitle(chosen, item.title));
      li.append(button);
      results.append(li);
    }
  };
  box.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(search, 150); });
  box.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); search(); } });
});
