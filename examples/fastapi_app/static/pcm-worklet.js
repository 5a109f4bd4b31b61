// Captures the microphone as 16-bit PCM: posts 20 ms chunks (320 samples at 16 kHz) as
// ArrayBuffers of little-endian int16 (every browser platform is little-endian).
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.samples = Math.round(sampleRate / 50);
    this.chunk = new Int16Array(this.samples);
    this.filled = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.chunk[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        if (this.filled === this.samples) {
          this.port.postMessage(this.chunk.buffer, [this.chunk.buffer]);
          this.chunk = new Int16Array(this.samples);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
