"""Our api.proto is wire-compatible with Katib's: every message, field, enum and method we define
matches the descriptors that kubeflow-katib ships (both load into this process: ours live in a descriptor
pool of their own)."""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool
from kubeflow.katib import katib_api_pb2

from katib_nas.proto import api_pb2

#: How `make proto` turns protoc's output into ours: the same file, added to a descriptor pool of its own.
DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
OWN_POOL = "POOL = _descriptor_pool.DescriptorPool()\nDESCRIPTOR = POOL.AddSerializedFile("


def katib_file() -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(katib_api_pb2.DESCRIPTOR.serialized_pb)


def our_file() -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(api_pb2.DESCRIPTOR.serialized_pb)


def messages(file: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.DescriptorProto]:
    found = {}

    def walk(prefix: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = f"{prefix}.{message.name}"
        found[name] = message
        for nested in message.nested_type:
            walk(name, nested)

    for message in file.message_type:
        walk(file.package, message)
    return found


def enums(file: descriptor_pb2.FileDescriptorProto) -> dict[str, descriptor_pb2.EnumDescriptorProto]:
    found = {f"{file.package}.{e.name}": e for e in file.enum_type}
    for name, message in messages(file).items():
        for enum in message.enum_type:
            found[f"{name}.{enum.name}"] = enum
    return found


def json_name(field: descriptor_pb2.FieldDescriptorProto) -> str:
    """The JSON name, whether the generator stored it or left protoc's default (lowerCamelCase)."""
    head, *rest = field.name.split("_")
    return field.json_name or head + "".join(part.capitalize() for part in rest)


def field_signature(field: descriptor_pb2.FieldDescriptorProto) -> tuple:
    return (field.number, field.type, field.label, field.type_name, json_name(field))


def test_package_and_service_match() -> None:
    ours, theirs = our_file(), katib_file()
    assert ours.package == theirs.package == "api.v1.beta1"
    service = {s.name: s for s in theirs.service}["Suggestion"]
    assert [(m.name, m.input_type, m.output_type) for m in ours.service[0].method] == [
        (m.name, m.input_type, m.output_type) for m in service.method]


def test_every_message_and_field_matches() -> None:
    ours, theirs = messages(our_file()), messages(katib_file())
    assert "api.v1.beta1.GetSuggestionsRequest" in ours
    differences = []
    for name, message in ours.items():
        if name not in theirs:
            differences.append(f"{name}: not in Katib")
            continue
        their_fields = {f.name: f for f in theirs[name].field}
        our_fields = {f.name: f for f in message.field}
        for field_name in sorted(set(our_fields) | set(their_fields)):
            if field_name not in our_fields:
                differences.append(f"{name}.{field_name}: missing here")
            elif field_name not in their_fields:
                differences.append(f"{name}.{field_name}: not in Katib")
            elif field_signature(our_fields[field_name]) != field_signature(their_fields[field_name]):
                differences.append(f"{name}.{field_name}: {field_signature(our_fields[field_name])} != "
                                   f"{field_signature(their_fields[field_name])}")
        if message.options.map_entry != theirs[name].options.map_entry:
            differences.append(f"{name}: map entry differs")
    assert differences == []


def test_every_enum_value_matches() -> None:
    ours, theirs = enums(our_file()), enums(katib_file())
    assert "api.v1.beta1.TrialStatus.TrialConditionType" in ours
    for name, enum in ours.items():
        assert name in theirs, name
        assert [(v.name, v.number) for v in enum.value] == [(v.name, v.number) for v in theirs[name].value], name


def test_generated_stubs_match_the_proto_source(tmp_path) -> None:
    import importlib.resources as resources

    from grpc_tools import protoc

    proto_dir = resources.files("katib_nas.proto")
    code = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={tmp_path}", str(proto_dir / "api.proto")])
    assert code == 0
    regenerated = (tmp_path / "api_pb2.py").read_text()
    assert DEFAULT_POOL in regenerated
    assert regenerated.replace(DEFAULT_POOL, OWN_POOL) == (proto_dir / "api_pb2.py").read_text(), \
        "run `make proto` to regenerate the stubs"


def test_our_messages_live_outside_the_default_pool() -> None:
    assert api_pb2.DESCRIPTOR.pool is api_pb2.POOL
    assert api_pb2.POOL is not descriptor_pool.Default()
    assert katib_api_pb2.DESCRIPTOR.pool is descriptor_pool.Default()
