// C bridge over libsentencepiece: training from an in-memory sentence list, loading, encoding.
#include "CSentencePiece.h"
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {
char *copy_string(const std::string &s) {
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (p) { std::memcpy(p, s.data(), s.size()); p[s.size()] = 0; }
    return p;
}

class VectorIterator : public sentencepiece::SentenceIterator {
  public:
    VectorIterator(const char *const *sentences, size_t count) : sentences_(sentences), count_(count) {
        if (count_ > 0) current_ = sentences_[0];
    }
    bool done() const override { return index_ >= count_; }
    void Next() override {
        ++index_;
        if (index_ < count_) current_ = sentences_[index_];
    }
    const std::string &value() const override { return current_; }
    sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

  private:
    const char *const *sentences_;
    size_t count_;
    size_t index_ = 0;
    std::string current_;
};
}  // namespace

struct embedps_spm {
    sentencepiece::SentencePieceProcessor processor;
};

extern "C" int embedps_spm_train(const char *const *sentences, size_t count, const char *args,
                                 char **model, size_t *model_length, char **error) {
    VectorIterator it(sentences, count);
    std::string serialized;
    auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &serialized);
    if (!status.ok()) {
        *error = copy_string(status.ToString());
        return -1;
    }
    *model = static_cast<char *>(std::malloc(serialized.size()));
    std::memcpy(*model, serialized.data(), serialized.size());
    *model_length = serialized.size();
    return 0;
}

extern "C" embedps_spm *embedps_spm_load(const char *model, size_t model_length, char **error) {
    auto *spm = new embedps_spm();
    auto status = spm->processor.LoadFromSerializedProto(std::string(model, model_length));
    if (!status.ok()) {
        *error = copy_string(status.ToString());
        delete spm;
        return nullptr;
    }
    return spm;
}

extern "C" int embedps_spm_vocab_size(const embedps_spm *spm) { return spm->processor.GetPieceSize(); }

extern "C" int embedps_spm_encode(const embedps_spm *spm, const char *text, size_t length, int *ids, size_t capacity) {
    std::vector<int> out;
    if (!spm->processor.Encode(std::string(text, length), &out).ok()) return -1;
    for (size_t i = 0; i < out.size() && i < capacity; ++i) ids[i] = out[i];
    return static_cast<int>(out.size());
}

extern "C" void embedps_spm_free(embedps_spm *spm) { delete spm; }
