// Plain C interface over libsentencepiece (C++), so Swift never touches C++ classes.
#ifndef EMBEDPS_CSENTENCEPIECE_H
#define EMBEDPS_CSENTENCEPIECE_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

typedef struct embedps_spm embedps_spm;

/// Trains a model from `count` UTF-8 sentences with SentencePiece trainer flags `args` (e.g.
/// "--vocab_size=500 --model_type=unigram"). On success returns 0 and a malloc'ed serialized model in
/// *model / *model_length; on failure returns -1 and a malloc'ed message in *error. Caller frees both.
int embedps_spm_train(const char *const *sentences, size_t count, const char *args,
                      char **model, size_t *model_length, char **error);

/// Loads a serialized model; NULL and a malloc'ed *error on failure.
embedps_spm *embedps_spm_load(const char *model, size_t model_length, char **error);

/// Vocabulary size of a loaded model.
int embedps_spm_vocab_size(const embedps_spm *spm);

/// Encodes `text` into piece ids; writes at most `capacity` ids and returns how many the text has
/// (call again with a larger buffer when the result exceeds capacity), or -1 on error.
int embedps_spm_encode(const embedps_spm *spm, const char *text, size_t length, int *ids, size_t capacity);

void embedps_spm_free(embedps_spm *spm);

#ifdef __cplusplus
}
#endif
#endif
