#include "common/utf8_fields.h"

#include <grpcpp/support/slice.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/utf8.h"

namespace pm {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::FileDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// As protobuf's parser: deeper nesting is refused.
constexpr int kMaxDepth = 100;

enum WireType : int {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

// What protobuf 3.21 refuses to parse when it is not UTF-8: a `string`
// (not `bytes`) field declared in a proto3 file, map keys and values
// included (their entry type belongs to the same file).
bool MustBeUtf8(const FieldDescriptor& field) {
  return field.type() == FieldDescriptor::TYPE_STRING &&
         field.file()->syntax() == FileDescriptor::SYNTAX_PROTO3;
}

// Where a value sits, from the top message down; built on the stack as the
// walk descends and turned into text only for an error.
struct Frame {
  const Frame* parent = nullptr;
  const FieldDescriptor* field = nullptr;
  // The element of a repeated field (the entry of a map), or -1.
  int index = -1;
  // A map entry is named by its key once known: a string key's text, or
  // another key's value in decimal.
  const FieldDescriptor* key_field = nullptr;
  absl::string_view string_key;
  std::string scalar_key;
};

// A key other than a string, from its wire value, in decimal.
std::string ScalarKeyText(const FieldDescriptor& key, uint64_t raw) {
  switch (key.type()) {
    case FieldDescriptor::TYPE_INT32:
    case FieldDescriptor::TYPE_SFIXED32:
      return absl::StrCat(static_cast<int32_t>(raw));
    case FieldDescriptor::TYPE_INT64:
    case FieldDescriptor::TYPE_SFIXED64:
      return absl::StrCat(static_cast<int64_t>(raw));
    case FieldDescriptor::TYPE_SINT32:
      return absl::StrCat(static_cast<int32_t>((raw >> 1) ^ -(raw & 1)));
    case FieldDescriptor::TYPE_SINT64:
      return absl::StrCat(static_cast<int64_t>((raw >> 1) ^ -(raw & 1)));
    case FieldDescriptor::TYPE_BOOL:
      return raw != 0 ? "true" : "false";
    default:
      return absl::StrCat(raw);
  }
}

// "env", "spec.args", "processes[2].args" (without the frame's own index).
std::string FieldPath(const Frame& frame);

// "args[1]", "env[\"LANG\"]", "processes[2].executable".
std::string ValuePath(const Frame& frame) {
  std::string path = FieldPath(frame);
  if (frame.key_field != nullptr) {
    if (frame.key_field->type() == FieldDescriptor::TYPE_STRING) {
      absl::StrAppend(&path, "[\"", frame.string_key, "\"]");
    } else {
      absl::StrAppend(&path, "[", frame.scalar_key, "]");
    }
  } else if (frame.index >= 0) {
    absl::StrAppend(&path, "[", frame.index, "]");
  }
  return path;
}

std::string FieldPath(const Frame& frame) {
  if (frame.parent == nullptr) return frame.field->name();
  return absl::StrCat(ValuePath(*frame.parent), ".", frame.field->name());
}

// "; send it in args_bytes" when the message holding the field has a
// bytes form of it, by pm's naming convention (a `bytes` field, or for a
// map a repeated message of bytes, like env_bytes).
std::string BytesHint(const FieldDescriptor& field) {
  const FieldDescriptor* bytes =
      field.containing_type()->FindFieldByName(field.name() + "_bytes");
  if (bytes == nullptr) return "";
  return absl::StrCat("; send it in ", bytes->name());
}

// OK for valid text; else INVALID_ARGUMENT saying where, never what.
absl::Status CheckText(absl::string_view text, absl::string_view what,
                       const FieldDescriptor& hint_field) {
  const size_t bad = FindInvalidUtf8(text);
  if (bad == absl::string_view::npos) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s is not valid UTF-8 (byte 0x%02x at %d)%s", what,
      static_cast<unsigned char>(text[bad]), bad, BytesHint(hint_field)));
}

absl::Status CheckValue(absl::string_view text, const Frame& frame) {
  if (IsValidUtf8(text)) return absl::OkStatus();  // no path built
  return CheckText(text, ValuePath(frame), *frame.field);
}

absl::Status CheckKey(absl::string_view text, const Frame& frame) {
  if (IsValidUtf8(text)) return absl::OkStatus();
  return CheckText(text, absl::StrCat("a key of ", FieldPath(frame)),
                   *frame.field);
}

// ---- The wire walk -------------------------------------------------------

// One field as read off the wire.
struct WireField {
  uint32_t number = 0;
  int wire_type = 0;
  absl::string_view payload;  // kLengthDelimited
  uint64_t scalar = 0;        // kVarint, kFixed64, kFixed32
};

// A cursor over serialized bytes; every read says whether it fit.
class WireReader {
 public:
  explicit WireReader(absl::string_view data) : data_(data) {}
  bool AtEnd() const { return pos_ == data_.size(); }

  bool ReadVarint(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ == data_.size()) return false;
      const uint8_t byte = static_cast<uint8_t>(data_[pos_++]);
      *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;  // more than 10 bytes
  }
  bool ReadFixed(size_t size, uint64_t* value) {
    if (data_.size() - pos_ < size) return false;
    *value = 0;
    for (size_t i = 0; i < size; ++i) {  // little-endian
      *value |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i]))
                << (8 * i);
    }
    pos_ += size;
    return true;
  }
  bool ReadBytes(uint64_t size, absl::string_view* bytes) {
    if (data_.size() - pos_ < size) return false;
    *bytes = data_.substr(pos_, size);
    pos_ += size;
    return true;
  }

 private:
  absl::string_view data_;
  size_t pos_ = 0;
};

// Bytes that are not a message. DATA_LOSS only inside the walk, so that
// CheckUtf8Fields can tell it from a field that is not UTF-8 and say
// "malformed"; callers see INVALID_ARGUMENT.
absl::Status Malformed(absl::string_view why) {
  return absl::DataLossError(why);
}

// Reads the next field of `reader` into `field`, skipping whole groups
// (which only unknown fields can be in proto3). `group` is the number of
// the group being read, or 0 at a message's top level. Returns false in
// `more` at the end of the message (or of the group).
absl::Status NextField(WireReader& reader, uint32_t group, int depth,
                       WireField* field, bool* more) {
  *more = false;
  if (reader.AtEnd()) {
    if (group != 0) return Malformed("a group has no end");
    return absl::OkStatus();
  }
  uint64_t tag = 0;
  if (!reader.ReadVarint(&tag)) return Malformed("a tag is cut short");
  if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) {
    return Malformed(absl::StrCat("field number ", tag >> 3, " is invalid"));
  }
  field->number = static_cast<uint32_t>(tag >> 3);
  field->wire_type = static_cast<int>(tag & 7);
  switch (field->wire_type) {
    case kVarint:
      if (!reader.ReadVarint(&field->scalar)) {
        return Malformed(absl::StrCat("field ", field->number, " is cut short"));
      }
      break;
    case kFixed64:
    case kFixed32:
      if (!reader.ReadFixed(field->wire_type == kFixed64 ? 8 : 4,
                            &field->scalar)) {
        return Malformed(absl::StrCat("field ", field->number, " is cut short"));
      }
      break;
    case kLengthDelimited: {
      uint64_t size = 0;
      if (!reader.ReadVarint(&size) || !reader.ReadBytes(size, &field->payload)) {
        return Malformed(absl::StrCat("field ", field->number,
                                      " runs past the end"));
      }
      break;
    }
    case kStartGroup: {
      if (depth >= kMaxDepth) return Malformed("nested too deeply");
      WireField inner;
      bool inner_more = true;
      while (inner_more) {
        absl::Status read =
            NextField(reader, field->number, depth + 1, &inner, &inner_more);
        if (!read.ok()) return read;
      }
      break;
    }
    case kEndGroup:
      if (field->number != group) {
        return Malformed(
            absl::StrCat("an end of group ", field->number, " without its start"));
      }
      return absl::OkStatus();  // *more stays false: the group has ended
    default:
      return Malformed(absl::StrCat("field ", field->number, " has wire type ",
                                    field->wire_type));
  }
  *more = true;
  return absl::OkStatus();
}

// Calls visit(const WireField&) for each field of the message in `wire`.
template <typename Visit>
absl::Status ForEachField(absl::string_view wire, int depth, Visit visit) {
  if (depth > kMaxDepth) return Malformed("nested too deeply");
  WireReader reader(wire);
  WireField field;
  bool more = true;
  while (true) {
    absl::Status read = NextField(reader, /*group=*/0, depth, &field, &more);
    if (!read.ok()) return read;
    if (!more) return absl::OkStatus();
    absl::Status visited = visit(field);
    if (!visited.ok()) return visited;
  }
}

absl::Status WalkMessage(const Descriptor& type, absl::string_view wire,
                         const Frame* at, int depth);

// One entry of a map: its key first (which names the value), then its
// values. Every occurrence is checked, as protobuf checks each it parses.
absl::Status WalkMapEntry(absl::string_view wire, Frame& frame, int depth) {
  const Descriptor& entry = *frame.field->message_type();
  const FieldDescriptor& key = *entry.map_key();
  const FieldDescriptor& value = *entry.map_value();
  frame.key_field = &key;
  absl::Status keys = ForEachField(wire, depth, [&](const WireField& f) {
    if (f.number != static_cast<uint32_t>(key.number())) return absl::OkStatus();
    if (key.type() == FieldDescriptor::TYPE_STRING) {
      if (f.wire_type != kLengthDelimited) return absl::OkStatus();
      if (MustBeUtf8(key)) {
        absl::Status checked = CheckKey(f.payload, frame);
        if (!checked.ok()) return checked;
      }
      frame.string_key = f.payload;
    } else if (f.wire_type != kLengthDelimited) {
      frame.scalar_key = ScalarKeyText(key, f.scalar);
    }
    return absl::OkStatus();
  });
  if (!keys.ok()) return keys;
  return ForEachField(wire, depth, [&](const WireField& f) {
    if (f.number != static_cast<uint32_t>(value.number()) ||
        f.wire_type != kLengthDelimited) {
      return absl::OkStatus();
    }
    if (MustBeUtf8(value)) return CheckValue(f.payload, frame);
    if (value.type() == FieldDescriptor::TYPE_MESSAGE) {
      return WalkMessage(*value.message_type(), f.payload, &frame, depth + 1);
    }
    return absl::OkStatus();
  });
}

absl::Status WalkMessage(const Descriptor& type, absl::string_view wire,
                         const Frame* at, int depth) {
  // Elements seen so far of each repeated field, to name the bad one.
  absl::InlinedVector<int, 32> seen(type.field_count(), 0);
  return ForEachField(wire, depth, [&](const WireField& f) {
    // Only length-delimited payloads can hold text; a known field in
    // another wire type is an unknown field to protobuf too.
    if (f.wire_type != kLengthDelimited) return absl::OkStatus();
    const FieldDescriptor* field = type.FindFieldByNumber(f.number);
    if (field == nullptr) return absl::OkStatus();
    Frame frame;
    frame.parent = at;
    frame.field = field;
    if (field->is_repeated()) frame.index = seen[field->index()]++;
    if (field->is_map()) return WalkMapEntry(f.payload, frame, depth + 1);
    if (MustBeUtf8(*field)) return CheckValue(f.payload, frame);
    if (field->type() == FieldDescriptor::TYPE_MESSAGE) {
      return WalkMessage(*field->message_type(), f.payload, &frame, depth + 1);
    }
    return absl::OkStatus();
  });
}

// ---- The reflection walk -------------------------------------------------

absl::Status ReflectMessage(const Message& message, const Frame* at);

absl::Status ReflectMapEntry(const Message& entry, Frame& frame) {
  const Reflection& reflection = *entry.GetReflection();
  const FieldDescriptor& key = *entry.GetDescriptor()->map_key();
  const FieldDescriptor& value = *entry.GetDescriptor()->map_value();
  frame.key_field = &key;
  std::string key_scratch;
  if (key.type() == FieldDescriptor::TYPE_STRING) {
    const std::string& text = reflection.GetStringReference(entry, &key, &key_scratch);
    if (MustBeUtf8(key)) {
      absl::Status checked = CheckKey(text, frame);
      if (!checked.ok()) return checked;
    }
    frame.string_key = text;
  } else {
    // Only for naming the entry.
    switch (key.cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        frame.scalar_key = absl::StrCat(reflection.GetInt32(entry, &key));
        break;
      case FieldDescriptor::CPPTYPE_INT64:
        frame.scalar_key = absl::StrCat(reflection.GetInt64(entry, &key));
        break;
      case FieldDescriptor::CPPTYPE_UINT32:
        frame.scalar_key = absl::StrCat(reflection.GetUInt32(entry, &key));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        frame.scalar_key = absl::StrCat(reflection.GetUInt64(entry, &key));
        break;
      case FieldDescriptor::CPPTYPE_BOOL:
        frame.scalar_key = reflection.GetBool(entry, &key) ? "true" : "false";
        break;
      default:
        break;
    }
  }
  if (MustBeUtf8(value)) {
    std::string scratch;
    return CheckValue(reflection.GetStringReference(entry, &value, &scratch), frame);
  }
  if (value.type() == FieldDescriptor::TYPE_MESSAGE) {
    return ReflectMessage(reflection.GetMessage(entry, &value), &frame);
  }
  return absl::OkStatus();
}

absl::Status ReflectField(const Message& message, const FieldDescriptor& field,
                          Frame& frame) {
  const Reflection& reflection = *message.GetReflection();
  std::string scratch;
  if (field.is_map()) {
    return ReflectMapEntry(
        reflection.GetRepeatedMessage(message, &field, frame.index), frame);
  }
  if (MustBeUtf8(field)) {
    return CheckValue(
        field.is_repeated()
            ? reflection.GetRepeatedStringReference(message, &field, frame.index,
                                                    &scratch)
            : reflection.GetStringReference(message, &field, &scratch),
        frame);
  }
  if (field.type() == FieldDescriptor::TYPE_MESSAGE) {
    return ReflectMessage(
        field.is_repeated()
            ? reflection.GetRepeatedMessage(message, &field, frame.index)
            : reflection.GetMessage(message, &field),
        &frame);
  }
  return absl::OkStatus();
}

absl::Status ReflectMessage(const Message& message, const Frame* at) {
  const Reflection& reflection = *message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection.ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    const bool text_inside = MustBeUtf8(*field) ||
                             field->type() == FieldDescriptor::TYPE_MESSAGE;
    if (!text_inside) continue;
    const int count =
        field->is_repeated() ? reflection.FieldSize(message, field) : 1;
    for (int i = 0; i < count; ++i) {
      Frame frame;
      frame.parent = at;
      frame.field = field;
      if (field->is_repeated()) frame.index = i;
      absl::Status checked = ReflectField(message, *field, frame);
      if (!checked.ok()) return checked;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckUtf8Fields(const Descriptor& type, absl::string_view wire) {
  absl::Status status = WalkMessage(type, wire, /*at=*/nullptr, /*depth=*/0);
  // A UTF-8 error names its field already; a wire error says what broke.
  if (absl::IsDataLoss(status)) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ", type.full_name(), ": ", status.message()));
  }
  return status;
}

absl::Status CheckUtf8Fields(const Message& message) {
  return ReflectMessage(message, /*at=*/nullptr);
}

absl::Status ParseStrictInto(absl::string_view wire, Message& message) {
  message.Clear();
  absl::Status checked = CheckUtf8Fields(*message.GetDescriptor(), wire);
  if (!checked.ok()) return checked;
  if (wire.size() > static_cast<size_t>(INT32_MAX) ||
      !message.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed ", message.GetTypeName()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ByteBufferToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  grpc::Status dumped = buffer.Dump(&slices);
  if (!dumped.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the message: ", dumped.error_message()));
  }
  std::string bytes;
  bytes.reserve(buffer.Length());
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

grpc::ByteBuffer SerializeToByteBuffer(const Message& message) {
  std::string bytes = message.SerializeAsString();
  grpc::Slice slice(std::move(bytes));
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace pm
