// Hand-made frames for tests: raw segment tables and words that no builder would write (bad pointers,
// deep nesting, many pointers to one blob), so that the decoder's checks can be exercised one by one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace moe::test {

// A single-segment frame: segment table (1 segment of words.size() words) followed by `words`.
inline std::vector<std::byte> single_segment_frame(const std::vector<uint64_t>& words) {
  std::vector<std::byte> out(8 + 8 * words.size());
  uint32_t table[2] = {0, static_cast<uint32_t>(words.size())};
  std::memcpy(out.data(), table, 8);
  if (!words.empty()) std::memcpy(out.data() + 8, words.data(), 8 * words.size());
  return out;
}

// A segment table alone: `segments` segments, each `words_each` words long.
inline std::vector<std::byte> segment_table(uint32_t segments, uint32_t words_each) {
  std::vector<uint32_t> table(1 + segments, words_each);
  table[0] = segments - 1;
  if (table.size() % 2) table.push_back(0);  // pad to 8 bytes
  std::vector<std::byte> out(4 * table.size());
  std::memcpy(out.data(), table.data(), out.size());
  return out;
}

// Struct pointer: `offset` words from the end of the pointer, with the given section sizes.
inline uint64_t struct_pointer(int32_t offset, uint16_t data_words, uint16_t pointers) {
  uint64_t low = static_cast<uint32_t>(offset) << 2;  // kind 0 = struct
  return (low & 0xffffffffu) | (uint64_t{data_words} << 32) | (uint64_t{pointers} << 48);
}

// List-of-bytes pointer (Data): `offset` words from the end of the pointer, `bytes` elements.
inline uint64_t byte_list_pointer(int32_t offset, uint32_t bytes) {
  uint64_t low = (static_cast<uint32_t>(offset) << 2) | 1u;  // kind 1 = list
  return (low & 0xffffffffu) | (uint64_t{(bytes << 3) | 2u} << 32);  // element size 2 = byte
}

// Root layout shared by the crafted Envelopes below: 2 data words (requestId 0, union tag 0 = error),
// the schema's pointers null (0: the union member, so the schema reads a default Error; 1: clusterToken;
// 2: controlKey), and extra pointers a newer schema might have defined: invisible to the schema, but
// still walked by the schema-less checks.
constexpr uint16_t kEnvelopeSchemaPointers = 3;
inline std::vector<uint64_t> envelope_with_extra_pointers(uint16_t extra) {
  std::vector<uint64_t> words = {struct_pointer(0, 2, static_cast<uint16_t>(kEnvelopeSchemaPointers + extra)), 0, 0};
  for (uint16_t i = 0; i < kEnvelopeSchemaPointers; ++i) words.push_back(0);
  return words;
}

// An Envelope whose extra pointer starts a chain of `depth` structs, each pointing to the next.
inline std::vector<uint64_t> nested_struct_words(int depth) {
  auto words = envelope_with_extra_pointers(1);
  for (int i = 0; i < depth; ++i) words.push_back(struct_pointer(0, 0, 1));  // the next word
  words.push_back(0);  // null pointer ends the chain
  return words;
}

// An Envelope with `pointers` extra pointers that all point at one Data blob of `blob_words` words:
// small on the wire, `pointers * blob_words` words to traverse.
inline std::vector<uint64_t> amplified_words(int pointers, int blob_words) {
  auto words = envelope_with_extra_pointers(static_cast<uint16_t>(pointers));
  const int blob_start = static_cast<int>(words.size()) + pointers;
  for (int j = 0; j < pointers; ++j) {
    const int end_of_pointer = static_cast<int>(words.size()) + 1;
    words.push_back(byte_list_pointer(blob_start - end_of_pointer, static_cast<uint32_t>(8 * blob_words)));
  }
  for (int k = 0; k < blob_words; ++k) words.push_back(0x0101010101010101ull * (k % 251));
  return words;
}

// An Envelope whose union holds a ModelInfo (discriminant 6) with `elements` routers given as a list of
// VOID: a reader takes it for a list of zero-sized RouterWeights structs. One word on the wire, and
// `elements` words of traversal budget each time a reader opens the list.
inline std::vector<uint64_t> zero_sized_router_list_words(uint32_t elements) {
  std::vector<uint64_t> words = {struct_pointer(0, 2, 1), 0, uint64_t{6}};  // requestId 0, union tag 6
  words.push_back(struct_pointer(0, 0, 4));  // ModelInfo: specJson, routers, name, source
  words.push_back(0);                        // specJson: null
  words.push_back(uint64_t{1} | (uint64_t{elements} << 35));  // routers: list, offset 0, VOID x elements
  words.push_back(0);
  words.push_back(0);
  return words;
}

}  // namespace moe::test
