// Audio worklets of the page: "capture" hands the microphone's samples to the page,
// "player" plays decoded audio through a jitter buffer.

class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) this.port.postMessage(channel.slice(0));
    return true;
  }
}

// The jitter buffer: network frames arrive in bursts, the speakers need a steady
// flow. Playback starts once `target` seconds are buffered, and after an underrun it
// waits for `target` again instead of stuttering sample by sample.
class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.size = sampleRate * 4;
    this.ring = new Float32Array(this.size);
    this.read = 0;
    this.held = 0;
    this.target = Math.round(sampleRate * 0.12);
    this.playing = false;
    this.played = 0;
    this.underruns = 0;
    this.dropped = 0;
    this.ticks = 0;
    this.port.onmessage = (event) => this.push(event.data);
  }

  push(samples) {
    for (let i = 0; i < samples.length; i++) {
      if (this.held === this.size) { // overfull: drop the oldest
        this.read = (this.read + 1) % this.size;
        this.held--;
      }
      this.ring[(this.read + this.held) % this.size] = samples[i];
      this.held++;
    }
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    if (this.held > 3 * this.target) { // a burst after a stall: catch up, keep latency low
      const drop = this.held - this.target;
      this.read = (this.read + drop) % this.size;
      this.held -= drop;
      this.dropped += drop;
    }
    if (!this.playing && this.held >= this.target) this.playing = true;
    for (let i = 0; i < out.length; i++) {
      if (this.playing && this.held) {
        out[i] = this.ring[this.read];
        this.read = (this.read + 1) % this.size;
        this.held--;
        this.played++;
      } else {
        out[i] = 0;
      }
    }
    if (this.playing && !this.held) { this.playing = false; this.underruns++; }
    if (++this.ticks % 16 === 0) {
      this.port.postMessage({ held: this.held / sampleRate, played: this.played,
        underruns: this.underruns, dropped: this.dropped });
    }
    return true;
  }
}

registerProcessor("capture", Capture);
registerProcessor("player", Player);
