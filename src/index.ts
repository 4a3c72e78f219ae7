/**
 * sgt-webgpu: train a Stained Glass Transform on WebGPU. This file is the only public entry point.
 * @packageDocumentation
 */
export {
  init,
  getContext,
  GpuContext,
  onDeviceLost,
  onDeviceRestored,
  type DeviceLostEvent,
  type DeviceRestoredEvent,
  type InitOptions,
  type Dispatch,
  type BoundResource,
} from './gpu/context';
export {
  SgtError,
  isSgtError,
  installErrorTransfer,
  SGT_ERROR_CODES,
  type SgtErrorCode,
  type ErrorTransferHandler,
} from './gpu/errors';
export {
  composeWgsl,
  wgslLocation,
  WGSL_INCLUDES,
  WgslIncludeError,
  type ComposedWgsl,
  type WgslSegment,
} from './gpu/wgslCompose';
export {
  Tensor,
  tensor,
  scope,
  keep,
  readAll,
  liveBufferCount,
  numel,
  isPackedDType,
  storageBytes,
  type DType,
  type PackedDType,
  type TensorData,
  type TensorOptions,
  type GradNode,
  type TypedArrayFor,
} from './tensor/tensor';
export {
  backward,
  noGrad,
  enableGrad,
  isGradEnabled,
  defineOp,
  opRegistry,
  type OpDefinition,
  type BackwardContext,
  type BackwardOptions,
} from './autograd/engine';
export * from './ops/index';
export { randn, randnBlocks, type RandnOptions } from './ops/random';
export * from './losses/index';
export {
  embeddingStats,
  embeddingColumnStd,
  percentile,
  recommendedCharacteristicLength,
  type EmbeddingStats,
} from './models/embeddingStats';
export {
  AdamW,
  clipGradNorm,
  warmupCosine,
  accumulateGradients,
  type AdamWOptions,
  type AdamWState,
  type AdamWParamState,
  type ParamGroup,
  type WarmupCosineOptions,
} from './optim/index';
export {
  parseSafetensors,
  readSafetensors,
  toFloat32,
  toFloat16Bits,
  floatBitsToHalf,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsDType,
  type SafetensorsEntry,
  type SafetensorsFile,
  type SafetensorsSource,
  type ReadSafetensorsOptions,
} from './models/safetensors';
export { parseModelConfig, SUPPORTED_MODEL_TYPES, type ModelConfig, type ModelType } from './models/config';
export {
  readWeights,
  parseSafetensorsIndex,
  mergeSafetensorsShards,
  SAFETENSORS_INDEX_NAME,
  type WeightsInput,
  type WeightsSource,
  type ShardedWeights,
  type SafetensorsIndex,
} from './models/shards';
export {
  expectedWeights,
  checkWeights,
  uploadWeights,
  resolveWeightPrefix,
  isRowBlockWeight,
  rowBlockRows,
  ModelWeights,
  type WeightOptions,
  type UploadWeightsOptions,
  type WeightData,
  type WeightDtype,
} from './models/weights';
export {
  writeSafetensors,
  type SafetensorsWriteDType,
  type SafetensorsWriteData,
  type SafetensorsWriteTensor,
} from './models/safetensorsWriter';
export {
  loadCausalLM,
  CausalLM,
  type CausalLMForwardOptions,
  type CausalLMOutput,
  type LoadCausalLMOptions,
  type IdsInput,
  type AttentionMaskInput,
} from './models/causalLM';
export {
  TransformerCloak,
  NoiseMaskedNoisyTransformerModel,
  serializeTransformedPrompt,
  type TransformOptions,
  type TransformedPrompt,
  type TransformerCloakOptions,
  type CloakOutput,
  type NoisyBatch,
  type NoisyForwardOutput,
  type NoisyOutputsRequest,
  type NoisyModelOptions,
} from './models/cloak';
export { loadHuggingFaceTokenizer, byteTokenizer, type Tokenizer, type ByteTokenizerOptions } from './text/tokenizer';
export {
  loadPretrained,
  loadDefaultModel,
  readPretrainedFiles,
  defaultModelUrls,
  type PretrainedModel,
  type PretrainedFiles,
  type PretrainedProgress,
  type LoadPretrainedOptions,
  type ReadPretrainedOptions,
  type TokenizerKind,
} from './models/pretrained';
export { ModelFilesError, PRETRAINED_CACHE_NAME, type PretrainedSource, type ModelSourceOptions } from './models/modelSources';
export {
  packSequences,
  batches,
  trainHeldOutSplit,
  textDataset,
  seededRandom,
  seededPermutation,
  type PackedSequence,
  type NoiseMaskOptions,
  type PackOptions,
  type HostBatch,
  type BatchOptions,
  type TextDatasetOptions,
} from './text/data';
export {
  distillationLossFactory,
  mutualInformationDistillationLossFactory,
  crossEntropyDistillationFactory,
  mutualInformationCrossEntropyDistillationFactory,
  type DistillationLossFn,
  type ComponentLosses,
  type Hyperparameters,
  type LossFactoryResult,
  type DistillationLossOptions,
  type MutualInformationDistillationLossOptions,
  type CrossEntropyDistillationOptions,
  type MutualInformationCrossEntropyDistillationOptions,
  type FactoryRuntime,
  FACTORIES,
} from './factories/distillation';
export {
  FACTORY_OPTIONS,
  FACTORY_NAMES,
  parseFactoryOptions,
  type FactoryName,
  type FactoryOptionsFor,
  type ResolvedFactoryOptions,
  type FactoryEntry,
  type OptionSpec,
  type OptionKind,
  type BatchRule,
} from './factories/options';
export {
  privacyWeightScale,
  checkPrivacySchedule,
  scheduleForRun,
  PRIVACY_SCHEDULE_SHAPES,
  type PrivacyWeightSchedule,
  type PrivacyScheduleShape,
} from './factories/schedule';
export type { EmbeddingStatistics } from './models/causalLM';
export {
  nearestNeighbourInversion,
  nearestRowsByCosine,
  agreementAndKL,
  lmHeadAgreementAndKL,
  type InversionMetrics,
  type AgreementMetrics,
  type CosineSearchOptions,
  type InversionOptions,
} from './eval/metrics';
export {
  emptyUtilitySums,
  nextTokenTargets,
  utilityTensors,
  addUtility,
  utilityReport,
  type UtilityBatch,
  type UtilitySums,
  type UtilityReport,
} from './eval/utility';
export {
  inversionAttack,
  transformedEmbeddings,
  cleanEmbeddings,
  type EmbeddingSource,
  type InversionAttackOptions,
  type InversionAttackResult,
} from './eval/inversionAttack';
export {
  evaluatePrivacyUtility,
  evaluateHeldOut,
  evaluateHeldOutBatch,
  inversionAttacks,
  type PrivacyUtilityReport,
  type PrivacyUtilityOptions,
  type NearestNeighbourPrivacy,
  type InversionAttackReport,
  type InversionAttacksOptions,
} from './eval/privacyUtility';
export {
  Trainer,
  type TrainerOptions,
  type StepReport,
  type EvaluationReport,
} from './train/trainer';
export {
  estimateMemory,
  memoryProblems,
  checkMemory,
  weightDtypes,
  formatBytes,
  type MemoryEstimate,
  type MemoryEstimateOptions,
  type MemoryLimits,
  type MemorySettingNames,
  type BindingNeed,
  type WeightFileDtype,
} from './train/memory';
