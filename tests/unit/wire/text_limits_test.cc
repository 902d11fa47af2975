// Length caps on peers' text fields (runtime/wire/text_limits.h): at the cap accepted, one byte over
// refused naming the field, the length and the cap; an error reply's message cut, not refused.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include <string>

#include "runtime/wire/envelope_util.h"
#include "runtime/wire/text_limits.h"
#include "runtime/wire/wire_error.h"

namespace moe {
namespace {

std::string what_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(TextLimits, AtTheCapAcceptedOneOverRefusedNamingTheField) {
  const std::string at(kMaxAddressBytes, 'a'), over(kMaxAddressBytes + 1, 'a');
  EXPECT_NO_THROW(check_text_length("address", capnp::Text::Reader(at.data(), at.size()), kMaxAddressBytes));
  EXPECT_THROW(check_text_length("address", capnp::Text::Reader(over.data(), over.size()), kMaxAddressBytes), WireError);
  EXPECT_EQ(what_of([&] { check_text_length("address", capnp::Text::Reader(over.data(), over.size()), kMaxAddressBytes); }),
            "address is 257 bytes, at most 256 are accepted");
}

TEST(TextLimits, EveryModelInfoTextFieldIsCapped) {
  struct Case {
    const char* field;
    size_t cap;
  };
  for (const Case& c : {Case{"specJson", kMaxSpecJsonBytes}, Case{"name", kMaxNameBytes}, Case{"source", kMaxSourceBytes}}) {
    for (size_t size : {c.cap, c.cap + 1}) {
      capnp::MallocMessageBuilder message;
      auto info = message.initRoot<wire::ModelInfo>();
      const std::string text(size, 'x');
      const std::string field = c.field;
      if (field == "specJson") info.setSpecJson(text);
      if (field == "name") info.setName(text);
      if (field == "source") info.setSource(text);
      const std::string what = what_of([&] { check_model_info_text(info.asReader(), "the peer's"); });
      if (size == c.cap) {
        EXPECT_EQ(what, "") << field;
      } else {
        EXPECT_EQ(what, "the peer's modelInfo." + field + " is " + std::to_string(size) + " bytes, at most " +
                            std::to_string(c.cap) + " are accepted");
      }
    }
  }
}

TEST(TextLimits, AnErrorRepliesMessageIsCut) {
  capnp::MallocMessageBuilder message;
  auto envelope = message.initRoot<wire::Envelope>();
  set_error(envelope, wire::ErrorCode::BAD_REQUEST, std::string(100000, 'e'));
  const std::string what = what_of([&] { throw_if_error(envelope.asReader()); });
  EXPECT_LT(what.size(), kMaxErrorMessageBytes + 200);
  EXPECT_NE(what.find("[cut: 100000 bytes]"), std::string::npos) << what.substr(what.size() - 100);
  set_error(envelope, wire::ErrorCode::BAD_REQUEST, "short");
  EXPECT_NE(what_of([&] { throw_if_error(envelope.asReader()); }).find("short"), std::string::npos);
}

}  // namespace
}  // namespace moe
