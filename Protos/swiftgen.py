#!/usr/bin/env python3
"""Generates the Swift message layer and the RPC method table from the .proto files.

usage: swiftgen.py DESCRIPTOR_SET OUT_DIR

DESCRIPTOR_SET is what `protoc --include_source_info --descriptor_set_out=...` writes for the files to
generate. For each .proto file, OUT_DIR gets `<name>.pb.swift` (one struct per message, one struct per
enum, in the `Wire` namespace) and, when the file declares services, `<name>.rpc.swift` (one
`RPCMethod` per method with its access class, freeze behaviour and retry class, read from the method
options declared in embedps.proto).

Decoding is strict (see the runtime in Sources/EmbedPSWire/ProtoRuntime.swift). Features this generator
does not support (oneof, maps, groups, proto2 optional/required, extensions outside the method options)
stop it with an error naming the field, so nothing is ever generated wrong silently.

Needs Debian's python3-protobuf (run with /usr/bin/python3).
"""
import sys
from google.protobuf import descriptor_pb2 as d

F = d.FieldDescriptorProto

SWIFT_KEYWORDS = {
    "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init",
    "inout", "internal", "let", "open", "operator", "private", "protocol", "public", "rethrows", "static",
    "struct", "subscript", "typealias", "var", "break", "case", "continue", "default", "defer", "do",
    "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return", "switch", "where", "while",
    "as", "catch", "false", "is", "nil", "super", "self", "Self", "throw", "throws", "true", "try", "Type",
}

# proto scalar type -> (Swift type, default literal, runtime codec name)
SCALARS = {
    F.TYPE_DOUBLE: ("Double", "0", "Double"),
    F.TYPE_FLOAT: ("Float", "0", "Float"),
    F.TYPE_INT64: ("Int64", "0", "Int64"),
    F.TYPE_UINT64: ("UInt64", "0", "UInt64"),
    F.TYPE_INT32: ("Int32", "0", "Int32"),
    F.TYPE_FIXED64: ("UInt64", "0", "Fixed64"),
    F.TYPE_FIXED32: ("UInt32", "0", "Fixed32"),
    F.TYPE_BOOL: ("Bool", "false", "Bool"),
    F.TYPE_UINT32: ("UInt32", "0", "UInt32"),
    F.TYPE_SFIXED32: ("Int32", "0", "SFixed32"),
    F.TYPE_SFIXED64: ("Int64", "0", "SFixed64"),
    F.TYPE_SINT32: ("Int32", "0", "SInt32"),
    F.TYPE_SINT64: ("Int64", "0", "SInt64"),
    F.TYPE_STRING: ("String", '""', "String"),
    F.TYPE_BYTES: ("[UInt8]", "[]", "Bytes"),
}
PACKABLE = {k for k in SCALARS if k not in (F.TYPE_STRING, F.TYPE_BYTES)}

# Method options of embedps.proto (field numbers of the `extend google.protobuf.MethodOptions` block).
OPTION_ACCESS, OPTION_WHILE_FROZEN, OPTION_RETRY = 50101, 50102, 50103
ACCESS = {1: ".data", 2: ".admin", 3: ".public"}
WHILE_FROZEN = {1: ".serves", 2: ".refuses"}
RETRY = {1: ".safe", 2: ".withRequestID", 3: ".never"}


def fail(msg):
    sys.exit("swiftgen: " + msg)


def camel(name, upper=False):
    parts = name.split("_")
    s = parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])
    if upper:
        s = s[:1].upper() + s[1:]
    return s


def ident(name):
    return f"`{name}`" if name in SWIFT_KEYWORDS else name


def enum_case_name(value_name, enum_name):
    # OPTIMIZER_KIND_UNSPECIFIED -> unspecified (prefix of the enum stripped), SGD -> sgd.
    prefix = "".join("_" + c if c.isupper() else c for c in enum_name).lstrip("_").upper() + "_"
    n = value_name[len(prefix):] if value_name.startswith(prefix) and len(value_name) > len(prefix) else value_name
    c = camel(n.lower())
    if c[:1].isdigit():
        c = "v" + c
    return ident(c)


class Comments:
    def __init__(self, fd):
        self.by_path = {}
        for loc in fd.source_code_info.location:
            text = (loc.leading_comments or "") + (loc.trailing_comments or "")
            if text.strip():
                self.by_path[tuple(loc.path)] = text

    def doc(self, path, indent):
        text = self.by_path.get(tuple(path))
        if not text:
            return []
        lines = [l.rstrip() for l in text.strip("\n").split("\n")]
        return [indent + "/// " + l.strip() if l.strip() else indent + "///" for l in lines]


class Generator:
    def __init__(self, fds):
        self.fds = fds
        self.types = {}  # ".pkg.Name" -> (kind, swift name)
        for fd in fds.file:
            pkg = "." + fd.package if fd.package else ""
            for m in fd.message_type:
                self.register_message(m, pkg, "Wire")
            for e in fd.enum_type:
                self.types[f"{pkg}.{e.name}"] = ("enum", f"Wire.{e.name}")
        seen = {}
        for full, (_, swift) in self.types.items():
            if swift in seen:
                fail(f"{full} and {seen[swift]} would both be {swift}")
            seen[swift] = full

    def register_message(self, m, scope, swift_scope):
        full, swift = f"{scope}.{m.name}", f"{swift_scope}.{m.name}"
        self.types[full] = ("message", swift)
        for n in m.nested_type:
            self.register_message(n, full, swift)
        for e in m.enum_type:
            self.types[f"{full}.{e.name}"] = ("enum", f"{swift}.{e.name}")

    # MARK: enums

    def gen_enum(self, e, swift_name, path, comments, indent):
        out = comments.doc(path, indent)
        if not out:
            out = [f"{indent}/// The proto enum `{e.name}`."]
        out.append(f"{indent}/// Open: a value unknown to this build keeps its raw number (`rawValue`).")
        out.append(f"{indent}public struct {swift_name}: ProtoEnum, RawRepresentable, CustomStringConvertible, Codable {{")
        out.append(f"{indent}    public var rawValue: Int32")
        out.append(f"{indent}    public init(rawValue: Int32) {{ self.rawValue = rawValue }}")
        out.append(f"{indent}    public init(from decoder: any Decoder) throws {{ rawValue = try decoder.singleValueContainer().decode(Int32.self) }}")
        out.append(f"{indent}    public func encode(to encoder: any Encoder) throws {{ var c = encoder.singleValueContainer(); try c.encode(rawValue) }}")
        names = []
        for i, v in enumerate(e.value):
            case = enum_case_name(v.name, e.name)
            out += comments.doc(path + [2, i], indent + "    ")
            out.append(f"{indent}    public static let {case} = {swift_name}(rawValue: {v.number})")
            names.append((v.number, v.name))
        out.append(f"{indent}    /// The proto name of the value, or its number when unknown.")
        out.append(f"{indent}    public var description: String {{")
        out.append(f"{indent}        switch rawValue {{")
        for num, name in names:
            out.append(f'{indent}        case {num}: "{name}"')
        out.append(f'{indent}        default: "\\(rawValue)"')
        out.append(f"{indent}        }}")
        out.append(f"{indent}    }}")
        out.append(f"{indent}}}")
        return out

    # MARK: messages

    def field_info(self, f, msg_name):
        if f.HasField("oneof_index") and not f.proto3_optional:
            fail(f"{msg_name}.{f.name}: oneof is not supported")
        if f.proto3_optional:
            fail(f"{msg_name}.{f.name}: proto3 optional is not supported")
        if f.label == F.LABEL_REQUIRED:
            fail(f"{msg_name}.{f.name}: proto2 required is not supported")
        if f.type == F.TYPE_GROUP:
            fail(f"{msg_name}.{f.name}: groups are not supported")
        repeated = f.label == F.LABEL_REPEATED
        if f.type in SCALARS:
            swift, default, codec = SCALARS[f.type]
            kind = "scalar"
        elif f.type == F.TYPE_ENUM:
            kind, swift = self.types[f.type_name]
            default, codec = f"{swift}(rawValue: 0)", "Enum"
        elif f.type == F.TYPE_MESSAGE:
            kind, swift = self.types[f.type_name]
            if f.type_name.endswith("Entry"):
                fail(f"{msg_name}.{f.name}: maps are not supported")
            default, codec = "nil", "Message"
        else:
            fail(f"{msg_name}.{f.name}: unsupported type {f.type}")
        name = ident(camel(f.name))
        if repeated:
            return dict(name=name, proto=f.name, swift=f"[{swift}]", default="[]", codec=codec, repeated=True, kind=kind,
                        elem=swift, number=f.number, packable=f.type in PACKABLE or f.type == F.TYPE_ENUM)
        if f.type == F.TYPE_MESSAGE:
            return dict(name=name, proto=f.name, swift=f"{swift}?", default="nil", codec=codec, repeated=False, kind=kind,
                        elem=swift, number=f.number, packable=False)
        return dict(name=name, proto=f.name, swift=swift, default=default, codec=codec, repeated=False, kind=kind,
                    elem=swift, number=f.number, packable=False)

    def gen_message(self, m, swift_name, full_name, path, comments, indent):
        fields = [self.field_info(f, m.name) for f in m.field]
        out = comments.doc(path, indent)
        if not out:
            out.append(f"{indent}/// The proto message `{m.name}`.")
        out.append(f"{indent}/// Generated: decodes strictly (`WireError` on any malformed input), encodes canonically.")
        out.append(f"{indent}public struct {swift_name}: WireMessage, Codable {{")
        ii = indent + "    "
        out.append(f'{ii}public static let protoName = "{full_name.lstrip(".")}"')
        for i, f in enumerate(fields):
            out += comments.doc(path + [2, i], ii)
            out.append(f"{ii}public var {f['name']}: {f['swift']} = {f['default']}")
        # memberwise init with defaults
        out.append(f"{ii}public init() {{}}")
        if fields:
            params = ", ".join(f"{f['name'].strip('`')}: {f['swift']} = {f['default']}" for f in fields)
            out.append(f"{ii}public init({params}) {{")
            for f in fields:
                bare = f["name"].strip("`")
                out.append(f"{ii}    self.{f['name']} = {ident(bare)}")
            out.append(f"{ii}}}")
        # decode
        out.append(f"{ii}public mutating func decodeField(number: UInt32, wireType: ProtoWireType, from reader: inout ProtoReader) throws(WireError) -> Bool {{")
        if fields:
            out.append(f"{ii}    switch number {{")
            for f in fields:
                op = "Repeated" if f["repeated"] else ""
                out.append(f"{ii}    case {f['number']}: try reader.read{op}{f['codec']}(&{f['name']}, wireType, field: \"{m.name}.{f['proto']}\")")
            out.append(f"{ii}    default: return false")
            out.append(f"{ii}    }}")
            out.append(f"{ii}    return true")
        else:
            out.append(f"{ii}    false")
        out.append(f"{ii}}}")
        # encode
        out.append(f"{ii}public func encode(to writer: inout ProtoWriter) {{")
        for f in fields:
            op = "Repeated" if f["repeated"] else ""
            out.append(f"{ii}    writer.write{op}{f['codec']}({f['number']}, {f['name']})")
        out.append(f"{ii}}}")
        for i, n in enumerate(m.nested_type):
            out.append("")
            out += self.gen_message(n, n.name, f"{full_name}.{n.name}", path + [3, i], comments, ii)
        for i, e in enumerate(m.enum_type):
            out.append("")
            out += self.gen_enum(e, e.name, path + [4, i], comments, ii)
        out.append(f"{indent}}}")
        return out

    def gen_file(self, fd):
        comments = Comments(fd)
        pkg = "." + fd.package if fd.package else ""
        out = [f"// Generated by Protos/swiftgen.py from Protos/{fd.name}. Do not edit: run Protos/generate.sh.", ""]
        out.append("extension Wire {")
        for i, e in enumerate(fd.enum_type):
            out += self.gen_enum(e, e.name, [5, i], comments, "    ")
            out.append("")
        for i, m in enumerate(fd.message_type):
            out += self.gen_message(m, m.name, f"{pkg}.{m.name}", [4, i], comments, "    ")
            out.append("")
        if out[-1] == "":
            out.pop()
        out.append("}")
        return "\n".join(out) + "\n"

    # MARK: services

    @staticmethod
    def method_options(m):
        raw = m.options.SerializeToString()
        opts, i = {}, 0

        def varint():
            nonlocal i
            v, shift = 0, 0
            while True:
                b = raw[i]
                i += 1
                v |= (b & 0x7F) << shift
                if b < 0x80:
                    return v
                shift += 7

        while i < len(raw):
            key = varint()
            number, wt = key >> 3, key & 7
            if wt == 0:
                opts[number] = varint()
            elif wt == 2:
                n = varint()
                i += n
            elif wt == 1:
                i += 8
            elif wt == 5:
                i += 4
            else:
                fail(f"method {m.name}: unexpected option wire type {wt}")
        return opts

    def gen_services(self, fd):
        comments = Comments(fd)
        out = [f"// Generated by Protos/swiftgen.py from Protos/{fd.name}. Do not edit: run Protos/generate.sh.", ""]
        for si, s in enumerate(fd.service):
            full = f"{fd.package}.{s.name}"
            name = s.name + "RPC"
            out += comments.doc([6, si], "")
            out.append(f"/// Every method of `{full}`: path, message types, access class, freeze behaviour, retry class.")
            out.append(f"public enum {name} {{")
            names = []
            for mi, m in enumerate(s.method):
                if m.client_streaming or m.server_streaming:
                    fail(f"{full}/{m.name}: streaming methods are not supported")
                opts = self.method_options(m)
                if fd.package == "grpc.health.v1":
                    access, frozen, retry = ".public", ".serves", ".safe"
                else:
                    try:
                        access = ACCESS[opts[OPTION_ACCESS]]
                        frozen = WHILE_FROZEN[opts[OPTION_WHILE_FROZEN]]
                        retry = RETRY[opts[OPTION_RETRY]]
                    except KeyError:
                        fail(f"{full}/{m.name}: set the access, while_frozen and retry options")
                req = self.types[m.input_type][1]
                resp = self.types[m.output_type][1]
                case = ident(camel(m.name[:1].lower() + m.name[1:]))
                out += comments.doc([6, si, 2, mi], "    ")
                out.append(f"    public static let {case} = RPCMethod<{req}, {resp}>(")
                out.append(f'        path: "/{full}/{m.name}", access: {access}, whileFrozen: {frozen}, retry: {retry})')
                names.append(case)
            out.append("    /// All methods of the service, in .proto order.")
            out.append(f"    public static let all: [any RPCMethodDescription] = [{', '.join(names)}]")
            out.append("}")
            out.append("")
        return "\n".join(out)


def main():
    if len(sys.argv) != 3:
        fail("usage: swiftgen.py DESCRIPTOR_SET OUT_DIR")
    fds = d.FileDescriptorSet()
    with open(sys.argv[1], "rb") as f:
        fds.ParseFromString(f.read())
    gen = Generator(fds)
    for fd in fds.file:
        if fd.name.startswith("google/"):
            continue
        if fd.syntax != "proto3":
            fail(f"{fd.name}: only proto3 is supported")
        base = fd.name[:-len(".proto")]
        with open(f"{sys.argv[2]}/{base}.pb.swift", "w") as f:
            f.write(gen.gen_file(fd))
        if fd.service:
            with open(f"{sys.argv[2]}/{base}.rpc.swift", "w") as f:
                f.write(gen.gen_services(fd))


if __name__ == "__main__":
    main()
