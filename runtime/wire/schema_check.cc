// Schema-driven message validation (see schema_check.h).
#include "runtime/wire/schema_check.h"

#include <capnp/schema.h>

namespace moe {

namespace {

void check_list(capnp::DynamicList::Reader list);

void check_field(capnp::DynamicStruct::Reader reader, capnp::StructSchema::Field field) {
  switch (field.getType().which()) {
    case capnp::schema::Type::STRUCT:  // also groups
      check_against_schema(reader.get(field).as<capnp::DynamicStruct>());
      return;
    case capnp::schema::Type::LIST:
      check_list(reader.get(field).as<capnp::DynamicList>());
      return;
    case capnp::schema::Type::TEXT:
    case capnp::schema::Type::DATA:
      reader.get(field);  // checks the pointer kind, bounds and (text) the NUL terminator
      return;
    default:  // data-section values, AnyPointer, interfaces: nothing to check here
      return;
  }
}

void check_list(capnp::DynamicList::Reader list) {
  switch (list.getSchema().getElementType().which()) {
    case capnp::schema::Type::STRUCT:
      for (auto element : list) check_against_schema(element.as<capnp::DynamicStruct>());
      return;
    case capnp::schema::Type::LIST:
      for (auto element : list) check_list(element.as<capnp::DynamicList>());
      return;
    case capnp::schema::Type::TEXT:
    case capnp::schema::Type::DATA:
      for (auto element : list) (void)element;  // reading each element checks it
      return;
    default:  // primitive lists: getting the list already checked its element size
      return;
  }
}

}  // namespace

void check_against_schema(capnp::DynamicStruct::Reader message) {
  for (auto field : message.getSchema().getNonUnionFields()) check_field(message, field);
  KJ_IF_MAYBE(active, message.which()) {  // unknown discriminants (a newer peer) are left to the handler
    check_field(message, *active);
  }
}

}  // namespace moe
