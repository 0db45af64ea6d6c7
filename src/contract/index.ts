export * from './topics.js';
export * as payloads from './payloads.js';
export { encode, decode } from './codec.js';
export * as images from './images.js';
