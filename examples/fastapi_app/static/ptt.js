// Push to talk: hold the button (or Space) to speak, release to get the text.
// Audio goes to this app's /ws/transcribe (relay.js has the microphone and the socket).
const talk = document.getElementById("talk");
const statusLine = document.getElementById("status");
const errorLine = document.getElementById("error");
const transcript = document.getElementById("transcript");

let socket = null; // the relay, from the first press until it closes
let capture = null; // the microphone, once started
let talking = false;
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
  if (!socket) {
    const relay = new Relay("/ws/transcribe", onMessage, () => {
      if (socket === relay) socket = null;
      setStatus("Disconnected: press to reconnect");
    });
    socket = relay;
  }
  return socket.ready;
}

async function startMicrophone() {
  if (!capture) {
    capture = await openMicrophone((chunk) => {
      if (talking && socket) socket.send(chunk); // kept until the relay is ready
    });
  }
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
