// Schema-driven validation of a received message: touches every pointer field the schema knows (the
// active union member, groups, lists of structs element by element) so that wrong pointer kinds, list
// element sizes that do not match the field's type, and text without its NUL terminator are found at
// decode time, not in the middle of a handler. Primitive lists and Data blobs are checked in O(1).
#pragma once

#include <capnp/dynamic.h>

namespace moe {

// Throws kj::Exception (as Cap'n Proto does) on the first invalid field.
void check_against_schema(capnp::DynamicStruct::Reader message);

}  // namespace moe
