// Password fields: a "Show" button on each (ASVS 2.1.12) and an advisory strength
// meter under new passwords (ASVS 2.1.8). The pages work without this script; the
// identity service alone decides which passwords are accepted.
"use strict";

function addShowButton(input) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "link reveal";
  button.textContent = "Show";
  // The button's name stays "Show" (with its pressed state) so that the field's
  // own label is the only one that mentions the password.
  button.setAttribute("aria-pressed", "false");
  if (input.id) button.setAttribute("aria-controls", input.id);
  button.addEventListener("click", () => {
    const shown = input.type === "text";
    input.type = shown ? "password" : "text";
    button.textContent = shown ? "Show" : "Hide";
    button.setAttribute("aria-pressed", String(!shown));
    input.focus();
  });
  input.insertAdjacentElement("afterend", button);
}

// A rough estimate in the spirit of NIST SP 800-63B: length matters most, and
// few distinct characters or a simple sequence make a long password weak.
function strengthOf(password) {
  const length = [...password.replace(/\s+/g, " ")].length;
  const distinct = new Set(password.toLowerCase()).size;
  if (length === 0) return { level: 0, label: "" };
  if (length < 12) return { level: 1, label: "Too short: use at least 12 characters" };
  if (distinct < 5) return { level: 1, label: "Too repetitive" };
  if (length < 16) return { level: 2, label: "Fair: a longer phrase is stronger" };
  if (length < 20) return { level: 3, label: "Good" };
  return { level: 4, label: "Strong" };
}

function addStrengthMeter(input) {
  const meter = document.createElement("meter");
  meter.min = 0;
  meter.max = 4;
  meter.low = 2;
  meter.high = 3;
  meter.optimum = 4;
  meter.value = 0;
  meter.id = input.id + "-strength";
  const label = document.createElement("p");
  label.className = "hint";
  label.setAttribute("aria-live", "polite");
  const wrapper = document.createElement("div");
  wrapper.className = "strength";
  wrapper.append(meter, label);
  input.parentElement.append(wrapper);
  input.setAttribute("aria-describedby", label.id = input.id + "-strength-text");
  input.addEventListener("input", () => {
    const strength = strengthOf(input.value);
    meter.value = strength.level;
    label.textContent = strength.label;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input[type=password]")) {
    addShowButton(input);
    if (input.name === "new_password") {
      addStrengthMeter(input);
    }
  }
});
