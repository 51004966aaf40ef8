"""TEST DOUBLE of EC2's VM Import service (ImportSnapshot, DescribeImportSnapshotTasks),
which moto does not implement: everything else (S3, snapshots, register-image, tags,
waiters, launch permissions) is moto's own in-process AWS.

Hooked into a boto3 Session's events, so the code under test makes its ordinary calls.
Like the real service it reads the object from (moto's) S3 and fails the task when the
object is missing; on success it creates a real moto snapshot of the disk's size (GiB,
rounded up). `fail_with` makes the task fail as EC2 reports it: status `deleted` and a
StatusMessage. `polls` is how many describes report `active` before the end state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError


@dataclass
class ImportServiceDouble:
    session: Any
    region: str
    polls: int = 2
    fail_with: str | None = None
    params: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def install(self) -> ImportServiceDouble:
        ev = self.session.events
        ev.register("before-parameter-build.ec2.*", self._record)
        ev.register("before-call.ec2.ImportSnapshot", self._import)
        ev.register("before-call.ec2.DescribeImportSnapshotTasks", self._describe)
        return self

    def _record(self, params: dict[str, Any], model: Any, context: dict[str, Any],
                **_: Any) -> None:
        self.params.setdefault(model.name, []).append(dict(params))
        context["osb_params"] = dict(params)

    @staticmethod
    def _ok(body: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        return AWSResponse("https://ec2.double", 200, {}, None), body

    def _import(self, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        p = context["osb_params"]
        bucket = p["DiskContainer"]["UserBucket"]["S3Bucket"]
        key = p["DiskContainer"]["UserBucket"]["S3Key"]
        task_id = f"import-snap-{len(self.tasks) + 1:017x}"
        detail: dict[str, Any] = {"Format": p["DiskContainer"]["Format"],
                                  "UserBucket": {"S3Bucket": bucket, "S3Key": key}}
        s3 = self.session.client("s3", region_name=self.region)
        fail: str | None
        try:
            size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        except ClientError:
            size, fail = 0, "ClientError: The given S3 object is not local to the region or " \
                            "does not exist"
        else:
            fail = self.fail_with
        self.tasks[task_id] = {"detail": detail, "size": size, "fail": fail, "seen": 0}
        return self._ok({"ImportTaskId": task_id, "Description": p.get("Description", ""),
                         "SnapshotTaskDetail": {**detail, "Status": "active",
                                                "Progress": "0"}})

    def _describe(self, context: dict[str, Any], **_: Any
                  ) -> tuple[AWSResponse, dict[str, Any]]:
        out = []
        for task_id in context["osb_params"]["ImportTaskIds"]:
            t = self.tasks[task_id]
            t["seen"] += 1
            detail = dict(t["detail"])
            if t["seen"] <= self.polls:
                detail.update(Status="active", Progress=str(30 * t["seen"]),
                              StatusMessage="converting")
            elif t["fail"]:
                detail.update(Status="deleted", StatusMessage=t["fail"])
            else:
                if "SnapshotId" not in t:
                    t["SnapshotId"] = self._make_snapshot(t["size"])
                detail.update(Status="completed", SnapshotId=t["SnapshotId"],
                              DiskImageSize=float(t["size"]))
            out.append({"ImportTaskId": task_id, "SnapshotTaskDetail": detail})
        return self._ok({"ImportSnapshotTasks": out})

    def _make_snapshot(self, size: int) -> str:
        ec2 = self.session.client("ec2", region_name=self.region)
        zone = f"{self.region}a"
        vol = ec2.create_volume(Size=max(1, math.ceil(size / 2**30)), AvailabilityZone=zone)
        snap = ec2.create_snapshot(VolumeId=vol["VolumeId"], Description="imported")
        ec2.delete_volume(VolumeId=vol["VolumeId"])
        return str(snap["SnapshotId"])
