// Package gguf writes GGUF v3 model files and generates small synthetic
// llama-architecture models whose greedy output is known in advance.
//
// # Writing GGUF files
//
// A [Writer] collects metadata key/values and tensors, then encodes them in
// the GGUF v3 layout that llama.cpp reads: the header, the metadata, the
// tensor infos, padding to the alignment (general.alignment, 32 when the key
// is absent) and the tensor data, each tensor padded to the alignment as well.
// Tensors may be given as complete float32 slices ([Writer.AddTensor]) or as a
// row generator ([Writer.AddTensorFunc]) that the writer calls while it
// streams the file, so a model of hundreds of millions of parameters never has
// to be held in memory. Tensor data is stored as F32, F16, Q8_0 or Q4_0; the
// block quantisation ([Quantize], [Dequantize]) follows the ggml block layouts
// byte for byte.
//
//	w := gguf.NewWriter()
//	w.SetString("general.architecture", "llama")
//	w.SetUint32("llama.block_count", 2)
//	if err := w.SetArray("tokenizer.ggml.tokens", []string{"<unk>", "<s>"}); err != nil { ... }
//	if err := w.AddTensor("output_norm.weight", []uint64{64}, gguf.F32, norm); err != nil { ... }
//	err := w.WriteFile(ctx, "model.gguf") // temporary file + rename
//
// # Synthetic models
//
// [WriteSynth] writes a llama model with a SentencePiece vocabulary, a ChatML
// chat template and weights chosen so that greedy decoding is predictable:
// every chat prompt is answered with [SynthReply] followed by <|im_end|>, and
// the raw prompt [SynthRawPrompt] continues with [SynthRawContinuation]. The
// model can be scaled to a target parameter count for benchmarks; the extra
// weights cost real compute but do not change the output.
package gguf
