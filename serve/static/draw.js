// The drawing pad: white strokes on black (as MNIST), sent as a PNG to /v1/models/<model>/predict.
"use strict";
const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const modelSelect = document.getElementById("model");
let drawing = false;
let last = null;

function clearPad() {
  ink.fillStyle = "#000";
  ink.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("digit").textContent = "?";
  document.getElementById("meta").textContent = "draw to predict";
  document.getElementById("bars").replaceChildren();
  document.getElementById("error").textContent = "";
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

function stroke(to) {
  ink.strokeStyle = "#fff";
  ink.lineWidth = 20;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(...(last || to));
  ink.lineTo(...to);
  ink.stroke();
  last = to;
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  last = null;
  pad.setPointerCapture(event.pointerId);
  stroke(point(event));
});
pad.addEventListener("pointermove", (event) => { if (drawing) stroke(point(event)); });
for (const name of ["pointerup", "pointercancel"]) {
  pad.addEventListener(name, () => {
    if (!drawing) return;
    drawing = false;
    predict();
  });
}
document.getElementById("clear").addEventListener("click", clearPad);
modelSelect.addEventListener("change", predict);

function showBars(probabilities, digit) {
  const rows = probabilities.map((p, d) => {
    const row = document.createElement("li");
    row.className = d === digit ? "top" : "";
    row.innerHTML = `<span class="label">${d}</span><span class="track"><span class="fill"></span></span>` +
                    `<span class="pct">${(100 * p).toFixed(1)}%</span>`;
    row.querySelector(".fill").style.width = `${100 * p}%`;
    return row;
  });
  document.getElementById("bars").replaceChildren(...rows);
}

// "lenet version 1 (torch)", the version linked to its model card.
function showAnswerer(answer) {
  const card = document.createElement("a");
  card.href = `/models/${encodeURIComponent(answer.model)}/versions/${answer.version}`;
  card.textContent = `${answer.model} version ${answer.version}`;
  card.title = "model card: how it was trained, its results and figures";
  document.getElementById("meta").replaceChildren(card, ` (${answer.backend})`);
}

async function predict() {
  const png = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
  const error = document.getElementById("error");
  try {
    const response = await fetch(`/v1/models/${encodeURIComponent(modelSelect.value)}/predict`,
                                 {method: "POST", headers: {"Content-Type": "image/png"}, body: png});
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    error.textContent = "";
    document.getElementById("digit").textContent = answer.digit;
    showAnswerer(answer);
    showBars(answer.probabilities, answer.digit);
  } catch (failure) {
    error.textContent = failure.message;
  }
}

// Every served model that takes digits, as the server lists them.
async function listDigitModels() {
  try {
    const response = await fetch("/v1/models");
    const {models} = await response.json();
    const options = models.filter((m) => m.form === "digits").map((m) => new Option(m.name, m.name));
    modelSelect.replaceChildren(...options);
    if (!options.length) document.getElementById("error").textContent = "this server serves no model that reads digits";
  } catch (failure) {
    document.getElementById("error").textContent = `could not list the models: ${failure.message}`;
  }
}

clearPad();
listDigitModels();
