// Push to talk: hold the button (or Space) to speak, release to get the text.
// Audio goes to this app's /ws/transcribe as 16 kHz mono pcm_s16le; the app relays it to
// Cartesia with the API key, which never reaches the browser.
const SAMPLE_RATE = 16000;
const talk = document.getElementById("talk");
const statusLine = document.getElementById("status");
const errorLine = document.getElementById("error");
const transcript = document.getElementById("transcript");

let socket = null; // the open relay socket, once "ready"
let connecting = null; // a Promise while it opens
let capture = null; // the microphone, once started
let talking = false;
let waiting = []; // audio captured while the socket was still opening
let turn = null; // the element of the turn being transcribed
let turns = 0;

function setStatus(text) {
  statusLine.textContent = text;
}

function showError(text) {
  errorLine.textContent = text;
  errorLine.hidden = !text;
}

function currentTurn() {
  if (!turn) {
    turn = document.createElement("p");
    turn.className = "turn pending";
    transcript.append(turn);
  }
  return turn;
}

function onMessage(message) {
  if (message.type === "final") {
    currentTurn().textContent += message.text; // deltas, verbatim: no trimming, no spaces
  } else if (message.type === "turn") {
    currentTurn().classList.remove("pending");
    turn = null;
    turns += 1;
    transcript.dataset.turns = String(turns);
    if (!talking) setStatus("");
  } else if (message.type === "error") {
    showError(message.message);
  }
}

function connect() {
  if (connecting) return connecting;
  connecting = new Promise((resolve, reject) => {
    const url = new URL("/ws/transcribe", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "ready") {
        socket = ws;
        for (const chunk of waiting) ws.send(chunk);
        waiting = [];
        resolve(ws);
      } else {
        onMessage(message);
      }
    };
    ws.onclose = () => {
      if (socket === ws) socket = null;
      connecting = null;
      waiting = [];
      reject(new Error("could not reach the transcription server"));
      setStatus("Disconnected: press to reconnect");
    };
  });
  return connecting;
}

async function startMicrophone() {
  if (capture) return capture;
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const context = new AudioContext({ sampleRate: SAMPLE_RATE });
  if (context.sampleRate !== SAMPLE_RATE) throw new Error("this browser cannot capture at 16 kHz");
  await context.audioWorklet.addModule("/static/pcm-worklet.js");
  const node = new AudioWorkletNode(context, "pcm-capture");
  node.port.onmessage = (event) => {
    if (!talking) return;
    if (socket) socket.send(event.data);
    else waiting.push(event.data);
  };
  const mute = context.createGain(); // keeps the graph pulled without playing anything
  mute.gain.value = 0;
  context.createMediaStreamSource(stream).connect(node);
  node.connect(mute).connect(context.destination);
  capture = { context, stream };
  return capture;
}

async function press() {
  if (talking) return;
  talking = true;
  showError("");
  talk.classList.add("active");
  setStatus("Listening… release to transcribe");
  try {
    const [, mic] = await Promise.all([connect(), startMicrophone()]);
    await mic.context.resume();
  } catch (error) {
    talking = false;
    talk.classList.remove("active");
    showError(error.message);
    setStatus("");
  }
}

function release() {
  if (!talking) return;
  talking = false;
  talk.classList.remove("active");
  if (socket) {
    socket.send("finalize"); // the end of this turn, in order after its audio
    setStatus("Transcribing…");
  }
}

talk.addEventListener("pointerdown", (event) => {
  talk.setPointerCapture(event.pointerId);
  press();
});
talk.addEventListener("pointerup", release);
talk.addEventListener("pointercancel", release);
document.addEventListener("keydown", (event) => {
  if (event.code === "Space" && !event.repeat) {
    event.preventDefault();
    press();
  }
});
document.addEventListener("keyup", (event) => {
  if (event.code === "Space") release();
});
