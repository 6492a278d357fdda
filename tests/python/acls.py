"""Creates or deletes ACLs on a test broker with Confluent's admin client.

stdin: one JSON object {"bootstrap": str, "op": "create" | "delete",
"acls": [{"principal", "resource", "name", "pattern", "operation"}]}.
Exits non-zero if any binding fails.
"""
import json
import sys

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


if __name__ == "__main__":
    main()
