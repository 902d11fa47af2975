// A message builder that also owns word-aligned blob storage its Data fields point at (Cap'n Proto's
// referenceExternalData): a tensor is packed straight into that storage, which the builder does not zero
// first, and a gathered write (encode_segmented_frame) sends it as its own segment, without a copy.
#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include <capnp/message.h>
#include <capnp/orphan.h>

namespace moe {

class BlobMessageBuilder : public capnp::MallocMessageBuilder {
 public:
  using capnp::MallocMessageBuilder::MallocMessageBuilder;

  // An orphan Data of `bytes` bytes over fresh storage kept by this builder (valid as long as it is),
  // and the bytes to fill; the caller writes every one of them before the message is sent. The padding
  // up to the next word is zero.
  std::pair<capnp::Orphan<capnp::Data>, kj::ArrayPtr<kj::byte>> external_data(size_t bytes) {
    // An empty blob in a segment of its own would be a segment of zero words, which readers refuse.
    if (bytes == 0) return {getOrphanage().newOrphan<capnp::Data>(0), kj::ArrayPtr<kj::byte>()};
    const size_t words = (bytes + sizeof(capnp::word) - 1) / sizeof(capnp::word);
    storage_.emplace_back(new capnp::word[words]);  // not zeroed: the caller fills it
    auto* data = reinterpret_cast<kj::byte*>(storage_.back().get());
    std::memset(data + (words - 1) * sizeof(capnp::word), 0, sizeof(capnp::word));
    auto orphan = getOrphanage().referenceExternalData(capnp::Data::Reader(data, bytes));
    return {kj::mv(orphan), kj::arrayPtr(data, bytes)};
  }

 private:
  std::vector<std::unique_ptr<capnp::word[]>> storage_;
};

}  // namespace moe
