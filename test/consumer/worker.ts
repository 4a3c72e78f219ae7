// The app's own worker file: importing the package's worker entry exposes its TrainerService
// over comlink in this Web Worker.
import 'sgt-webgpu/worker';
