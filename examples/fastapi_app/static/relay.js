// What both pages share: the microphone as 16 kHz mono pcm_s16le, and the app's relay socket.
// The audio goes to this app, which relays it to Cartesia with the API key (never sent here).
const SAMPLE_RATE = 16000;

// Opens the microphone (with the browser's echo cancellation, noise suppression and gain
// control off) into an AudioContext at 16 kHz, so the browser resamples; the pcm-capture
// worklet calls onChunk(ArrayBuffer) with every 20 ms of 16-bit samples.
async function openMicrophone(onChunk) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
  });
  const context = new AudioContext({ sampleRate: SAMPLE_RATE });
  if (context.sampleRate !== SAMPLE_RATE) throw new Error("this browser cannot capture at 16 kHz");
  await context.audioWorklet.addModule("/static/pcm-worklet.js");
  const node = new AudioWorkletNode(context, "pcm-capture");
  node.port.onmessage = (event) => onChunk(event.data);
  const mute = context.createGain(); // keeps the graph pulled without playing anything
  mute.gain.value = 0;
  context.createMediaStreamSource(stream).connect(node);
  node.connect(mute).connect(context.destination);
  return { context, stream };
}

// One socket to a relay route of this app (path: "/ws/transcribe" or "/ws/turns").
// onMessage gets every JSON message but "ready"; onClose runs once when the socket closes.
// What is sent before the app says "ready" is kept, in order, and sent then.
class Relay {
  constructor(path, onMessage, onClose) {
    const url = new URL(path, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.pending = [];
    this.open = false;
    this.closed = false;
    // Resolves when the Cartesia session is open; rejects if the socket closes first.
    this.ready = new Promise((resolve, reject) => {
      this.ws.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type !== "ready") {
          onMessage(message);
          return;
        }
        this.open = true;
        for (const data of this.pending) this.ws.send(data);
        this.pending = [];
        resolve(this);
      };
      this.ws.onclose = () => {
        this.open = false;
        this.closed = true;
        this.pending = [];
        reject(new Error("could not reach the transcription server"));
        onClose();
      };
    });
    this.ready.catch(() => {}); // a failed open is also told through onClose
  }

  // Audio (an ArrayBuffer) or a command (a string).
  send(data) {
    if (this.open) this.ws.send(data);
    else if (!this.closed) this.pending.push(data);
  }
}
