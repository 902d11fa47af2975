// host:port parsing and printing.
#include <gtest/gtest.h>

#include "runtime/net/address.h"
#include "runtime/net/net_error.h"

namespace moe {
namespace {

TEST(Address, ParsesHostAndPort) {
  auto a = parse_host_port("10.1.2.3:7000");
  EXPECT_EQ(a.host, "10.1.2.3");
  EXPECT_EQ(a.port, 7000);
  auto b = parse_host_port("[::1]:0");
  EXPECT_EQ(b.host, "::1");
  EXPECT_EQ(b.port, 0);
  EXPECT_EQ(b.to_string(), "[::1]:0");
  EXPECT_EQ(parse_host_port("worker-3.local:65535").to_string(), "worker-3.local:65535");
}

TEST(Address, RejectsBadText) {
  for (const char* text : {"10.1.2.3", ":7000", "host:", "host:70000", "host:7x", "::1:80"}) {
    try {
      parse_host_port(text);
      ADD_FAILURE() << "parsed '" << text << "'";
    } catch (const NetError& e) {
      EXPECT_EQ(e.kind(), NetError::Kind::BadAddress);
      EXPECT_NE(std::string(e.what()).find(std::string("'") + text + "'"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace moe
