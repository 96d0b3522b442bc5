// ssepush.js as an ES module: import SsePush from '/ssepush.mjs'.
// ssepush.js is the one source; importing it for its effect defines globalThis.SsePush.
import './ssepush.js';

const SsePush = globalThis.SsePush;
export { SsePush };
export default SsePush;
