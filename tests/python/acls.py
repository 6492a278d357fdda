"""Creates or deletes ACLs on a test broker with Confluent's admin client.

stdin: one JSON object {"bootstrap": str, "op": "create" | "delete",
"acls": [{"principal", "resource", "name", "pattern", "operation"}]}.
Returns once the broker's authorizer applies them: the controller commits
ACLs to the metadata log and the broker replays it a moment later, so the
broker is asked (DescribeAcls answers from its authorizer) until they show.
Exits non-zero if any binding fails or they do not show within 30 s.
"""
import json
import sys
import time

from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)


def binding(acl, cls):
    return cls(
        ResourceType[acl["resource"]],
        acl["name"],
        ResourcePatternType[acl["pattern"]],
        acl["principal"],
        "*",
        AclOperation[acl["operation"]],
        AclPermissionType.ALLOW,
    )


def main():
    req = json.load(sys.stdin)
    admin = AdminClient({"bootstrap.servers": req["bootstrap"]})
    if req["op"] == "create":
        futures = admin.create_acls([binding(a, AclBinding) for a in req["acls"]])
    else:
        futures = admin.delete_acls([binding(a, AclBindingFilter) for a in req["acls"]])
    for f in futures.values():
        f.result(timeout=30)
    wanted = {key(binding(a, AclBinding)) for a in req["acls"]}
    deadline = time.monotonic() + 30
    while True:
        shown = {key(b) for b in admin.describe_acls(ANY).result(timeout=30)}
        done = wanted <= shown if req["op"] == "create" else not (wanted & shown)
        if done:
            return
        if time.monotonic() > deadline:
            sys.exit(f"the broker did not apply the ACLs within 30 s: {wanted - shown}")
        time.sleep(0.05)


ANY = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None,
                       None, AclOperation.ANY, AclPermissionType.ANY)


def key(b):
    return (b.restype, b.name, b.resource_pattern_type, b.principal,
            b.operation, b.permission_type)


if __name__ == "__main__":
    main()
