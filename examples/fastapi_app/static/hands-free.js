// Hands-free: no button. The microphone streams to this app's /ws/turns all the time and
// Cartesia's turn detection decides when each turn starts and ends. Each turn gets a line of
// marks, timed from when listening began: "barge-in" (turn.start: a voice agent stops
// talking), "eager end" (the user may be done: a reply could start on the grey text),
// "resumed" (that eager end was withdrawn: the user went on) and "end" (the final text).
const agent = document.getElementById("agent");
const statusLine = document.getElementById("status");
const errorLine = document.getElementById("error");
const transcript = document.getElementById("transcript");

const counts = { turns: 0, bargeIns: 0, eagerEnds: 0, resumes: 0 };
const open = new Map(); // turn index -> its elements, until turn.end
let began = null; // performance.now() when listening began

function setStatus(text) {
  statusLine.textContent = text;
}

function showError(text) {
  errorLine.textContent = text;
  errorLine.hidden = !text;
}

function count(name) {
  counts[name] += 1;
  transcript.dataset[name] = String(counts[name]);
}

function turnElements(index) {
  if (!open.has(index)) {
    const root = document.createElement("div");
    root.className = "turn pending";
    root.dataset.index = String(index);
    const text = document.createElement("p");
    text.className = "text";
    const marks = document.createElement("ul");
    marks.className = "marks";
    root.append(text, marks);
    transcript.append(root);
    open.set(index, { root, text, marks });
  }
  return open.get(index);
}

function mark(index, kind, label) {
  const item = document.createElement("li");
  item.className = `mark ${kind}`;
  const seconds = began === null ? 0 : (performance.now() - began) / 1000;
  item.textContent = `${label} ${seconds.toFixed(1)} s`;
  turnElements(index).marks.append(item);
}

function onMessage(message) {
  const index = message.index;
  if (message.type === "turn.start") {
    mark(index, "barge-in", "barge-in");
    count("bargeIns");
    agent.classList.add("barge-in");
    agent.textContent = "Barge-in: the agent stops talking";
  } else if (message.type === "turn.eager_end") {
    const turn = turnElements(index);
    turn.text.innerHTML = "";
    const eager = document.createElement("span");
    eager.className = "eager";
    eager.textContent = message.text; // a preview: the reply could start on it
    turn.text.append(eager);
    mark(index, "eager-end", "eager end");
    count("eagerEnds");
  } else if (message.type === "turn.resume") {
    turnElements(index).text.innerHTML = "";
    mark(index, "resume", "resumed: eager end withdrawn");
    count("resumes");
  } else if (message.type === "turn.end") {
    const turn = turnElements(index);
    turn.text.textContent = message.text; // verbatim: joined with nothing added, never trimmed
    turn.root.classList.remove("pending");
    mark(index, "end", "end");
    open.delete(index);
    count("turns");
    agent.classList.remove("barge-in");
    agent.textContent = "Agent may speak";
  } else if (message.type === "error") {
    showError(message.message);
  } else if (message.type === "done") {
    setStatus("Session over");
  }
}

async function start() {
  const relay = new Relay("/ws/turns", onMessage, () => {
    setStatus("Disconnected: reload the page to listen again");
  });
  try {
    const [, mic] = await Promise.all([relay.ready, openMicrophone((chunk) => relay.send(chunk))]);
    await mic.context.resume();
    if (mic.context.state !== "running") {
      // Browsers start audio only after a user gesture; any click or key will do.
      setStatus("Click anywhere to start listening");
      await new Promise((resolve) => {
        document.addEventListener("pointerdown", resolve, { once: true });
        document.addEventListener("keydown", resolve, { once: true });
      });
      await mic.context.resume();
    }
    began = performance.now();
    setStatus("Listening: speak, pause, speak again");
    document.body.dataset.listening = "true";
  } catch (error) {
    showError(error.message);
    setStatus("");
  }
}

start();
