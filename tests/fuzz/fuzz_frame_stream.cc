// Fuzz target: the incremental frame decoder (runtime/wire/framing.*) over an arbitrary byte stream.
// The stream is decoded twice: in one feed(), and in pieces whose sizes come from the first input
// byte, alternating feed() with the zero-copy body_window()/commit_body() path. Both must produce the
// same frames and errors in the same order; every frame that comes out must be readable (its kind named,
// error replies turned into RemoteError, tensors unpacked when the sizes agree).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "runtime/wire/envelope_util.h"
#include "runtime/wire/framing.h"
#include "runtime/wire/tensor_pack.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

// Small limits: the same checks as the defaults, without 64 MiB allocations slowing the fuzzer down.
moe::FrameLimits fuzz_limits() {
  moe::FrameLimits limits;
  limits.max_message_bytes = 1u << 20;
  limits.max_segments = 64;
  return limits;
}

// What a decoded item looks like from outside: "F<bytes>:<kind>" for a frame, "E<kind>" for an error.
std::string touch(moe::FrameDecoder& decoder) {
  std::string out;
  while (decoder.has_output()) {
    try {
      moe::Frame frame = decoder.pop();
      auto envelope = frame.envelope();
      out += "F" + std::to_string(frame.size_bytes()) + ":" + moe::message_kind_name(envelope) + ";";
      try {
        moe::throw_if_error(envelope);
      } catch (const moe::RemoteError&) {
        out += "remote;";
      }
      if (envelope.isForwardRequest()) {
        auto request = envelope.getForwardRequest();
        size_t elements = size_t{request.getNumTokens()} * request.getHidden();
        try {
          if (elements <= (1u << 16)) moe::unpack_tensor(request.getTokens(), request.getDtype(), elements, "tokens");
        } catch (const moe::WireError&) {
          out += "badtensor;";
        }
      }
    } catch (const moe::FrameError& e) {
      out += std::string("E") + moe::frame_error_kind_name(e.kind()) + ";";
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = 1 + data[0] % 64;  // piece size of the second decoding
  std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 1), size - 1);

  moe::FrameDecoder whole(fuzz_limits());
  whole.feed(stream);
  std::string expected = touch(whole);

  moe::FrameDecoder pieces(fuzz_limits());
  std::string got;
  size_t pos = 0;
  bool use_window = false;
  while (pos < stream.size() && !pieces.failed()) {
    size_t n = std::min(step, stream.size() - pos);
    auto window = pieces.body_window();
    if (use_window && !window.empty()) {
      n = std::min(n, window.size());
      std::memcpy(window.data(), stream.data() + pos, n);
      pieces.commit_body(n);
    } else {
      pieces.feed(stream.subspan(pos, n));
    }
    use_window = !use_window;
    pos += n;
    got += touch(pieces);
  }
  FUZZ_CHECK(got == expected, "piecewise decoding gave '%s', one feed gave '%s'", got.c_str(), expected.c_str());
  FUZZ_CHECK(whole.mid_frame() == pieces.mid_frame(), "mid_frame differs");
  try {
    pieces.finish();
  } catch (const moe::FrameError& e) {
    FUZZ_CHECK(e.kind() == moe::FrameError::Kind::Truncated, "finish() threw %s", e.what());
  }
  return 0;
}
