"""`osbuilder publish ami`: raw image -> S3 (multipart) -> EC2 import-snapshot -> wait ->
register-image (UEFI, ENA, IMDSv2 required) -> tags -> the AMI id.

The S3 object is only a vehicle for the import: it is deleted once the snapshot exists,
and also when the import fails, so a failed publish leaves nothing behind in the bucket.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osbuilder.host.formats.ami import AmiFacts, load_facts
from osbuilder.host.progress import Progress
from osbuilder.host.publish.aws import ApiCalls, error_code, explain, session
from osbuilder.shared.errors import OsbError

MIB = 1 << 20
ROOT_DEVICE = "/dev/xvda"
AMI_NAME = re.compile(r"^[A-Za-z0-9()\[\] ./'@_-]{3,128}$")
VMIMPORT_HELP = ("EC2 imports through the `vmimport` service role: see "
                 "https://docs.aws.amazon.com/vm-import/latest/userguide/required-permissions.html"
                 " (the role must be allowed to read the bucket)")


@dataclass(frozen=True)
class PublishOptions:
    region: str
    bucket: str
    name: str | None = None
    public: bool = False
    part_size: int = 64 * MIB
    poll_seconds: float = 15.0
    import_timeout_seconds: float = 3 * 3600.0


@dataclass(frozen=True)
class Published:
    ami_id: str
    snapshot_id: str
    name: str
    calls: ApiCalls


def ami_name(facts: AmiFacts, given: str | None) -> str:
    name = given or f"osbuilder-{facts.board}-{facts.version}"
    if not AMI_NAME.match(name):
        raise OsbError(f"--name {name!r}: an AMI name is 3-128 characters of letters, digits "
                       "and ( ) [ ] space . / - ' @ _")
    return name


def tags(facts: AmiFacts, name: str) -> list[dict[str, str]]:
    return [{"Key": "Name", "Value": name},
            {"Key": "osbuilder:version", "Value": facts.version},
            {"Key": "osbuilder:board", "Value": facts.board}]


def publish_ami(image: Path, opts: PublishOptions, progress: Progress,
                aws: Any | None = None) -> Published:
    """aws: a boto3 Session (tests pass one bound to moto); default: the standard chain."""
    facts, raw = load_facts(image)
    name = ami_name(facts, opts.name)
    aws = aws or session(opts.region)
    calls = ApiCalls()
    try:
        s3 = calls.attach(aws.client("s3", region_name=opts.region))
        ec2 = calls.attach(aws.client("ec2", region_name=opts.region))
    except Exception as exc:  # botocore's, e.g. an unknown AWS_PROFILE
        raise explain(exc, "starting the AWS clients") from None

    taken = call(ec2.describe_images, "looking for an AMI of the same name",
                 Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])["Images"]
    if taken:
        raise OsbError(f"an AMI named {name!r} already exists in {opts.region} "
                       f"({taken[0]['ImageId']}): pass another --name or deregister it")
    check_bucket(s3, opts.bucket, opts.region)
    key = f"osbuilder/{name}.img"
    upload(s3, raw, opts, key, progress)
    try:
        snapshot = import_snapshot(ec2, opts, key, name, facts, progress)
    finally:
        try:
            call(s3.delete_object, f"removing s3://{opts.bucket}/{key}", Bucket=opts.bucket,
                 Key=key)
        except OsbError as exc:  # never hide why the import failed
            progress.say(f"    warning: {exc}")
    ami = register(ec2, snapshot, name, facts, opts, progress)
    progress.say(f"    {calls.total} AWS API calls: {calls.summary()}")
    return Published(ami, snapshot, name, calls)


def call(fn: Any, doing: str, hint: str = "", **kwargs: Any) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, doing, hint) from exc


def check_bucket(s3: Any, bucket: str, region: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchBucket"):
            raise OsbError(f"--bucket {bucket}: no such bucket (create it in {region}, "
                           f"e.g. `aws s3 mb s3://{bucket} --region {region}`)") from exc
        if code in ("403", "AccessDenied"):
            raise OsbError(f"--bucket {bucket}: access denied: the credentials need "
                           "s3:ListBucket, s3:PutObject and s3:DeleteObject on it") from exc
        raise explain(exc, f"--bucket {bucket}") from exc
    except Exception as exc:
        raise explain(exc, f"--bucket {bucket}") from exc


def upload(s3: Any, raw: Path, opts: PublishOptions, key: str, progress: Progress) -> None:
    from boto3.exceptions import S3UploadFailedError
    from boto3.s3.transfer import TransferConfig

    size = raw.stat().st_size
    meter = progress.meter("uploading", f"{raw.name} -> s3://{opts.bucket}/{key}", size)
    config = TransferConfig(multipart_threshold=opts.part_size,
                            multipart_chunksize=opts.part_size, max_concurrency=4)
    try:
        s3.upload_file(str(raw), opts.bucket, key, Config=config, Callback=meter.update)
    except S3UploadFailedError as exc:
        raise OsbError(f"uploading {raw.name} to s3://{opts.bucket}/{key}: {exc}") from exc
    meter.finish()


def import_snapshot(ec2: Any, opts: PublishOptions, key: str, name: str, facts: AmiFacts,
                    progress: Progress) -> str:
    task = call(ec2.import_snapshot, "import-snapshot", VMIMPORT_HELP,
                Description=name,
                DiskContainer={"Description": name, "Format": "RAW",
                               "UserBucket": {"S3Bucket": opts.bucket, "S3Key": key}},
                TagSpecifications=[{"ResourceType": "import-snapshot-task",
                                    "Tags": tags(facts, name)}])["ImportTaskId"]
    progress.say(f"    import-snapshot {task} started")
    deadline = time.monotonic() + opts.import_timeout_seconds
    last = ""
    while True:
        [t] = call(ec2.describe_import_snapshot_tasks, f"waiting for {task}",
                   ImportTaskIds=[task])["ImportSnapshotTasks"]
        detail = t.get("SnapshotTaskDetail", {})
        status = detail.get("Status", "")
        line = f"{status} {detail.get('Progress', '')}% {detail.get('StatusMessage', '')}"
        if line != last:
            progress.say(f"    {task}: {line.strip()}")
            last = line
        if status == "completed":
            snapshot = str(detail["SnapshotId"])
            break
        if status in ("deleting", "deleted", "error"):
            raise OsbError(f"import-snapshot {task} failed: "
                           f"{detail.get('StatusMessage') or status} (is {key} an osbuilder "
                           "raw image? Did the vmimport role have access to the bucket?)")
        if time.monotonic() > deadline:
            raise OsbError(f"import-snapshot {task} still {status} after "
                           f"{opts.import_timeout_seconds:.0f} s; it may still finish: "
                           f"aws ec2 describe-import-snapshot-tasks --import-task-ids {task}")
        time.sleep(opts.poll_seconds)
    wait(ec2, "snapshot_completed", f"waiting for snapshot {snapshot}", opts,
         SnapshotIds=[snapshot])
    return snapshot


def wait(ec2: Any, waiter: str, doing: str, opts: PublishOptions, **kwargs: Any) -> None:
    from botocore.exceptions import WaiterError

    attempts = max(1, int(opts.import_timeout_seconds / max(opts.poll_seconds, 1)))
    try:
        ec2.get_waiter(waiter).wait(
            **kwargs, WaiterConfig={"Delay": max(1, round(opts.poll_seconds)),
                                    "MaxAttempts": attempts})
    except WaiterError as exc:
        raise OsbError(f"{doing}: {exc}") from exc


def register(ec2: Any, snapshot: str, name: str, facts: AmiFacts, opts: PublishOptions,
             progress: Progress) -> str:
    ami = call(
        ec2.register_image, "register-image",
        Name=name, Description=f"osbuilder {facts.version} for {facts.board}",
        Architecture=facts.architecture, BootMode=facts.boot_mode, EnaSupport=True,
        ImdsSupport="v2.0", VirtualizationType="hvm", RootDeviceName=ROOT_DEVICE,
        BlockDeviceMappings=[{"DeviceName": ROOT_DEVICE,
                              "Ebs": {"SnapshotId": snapshot, "DeleteOnTermination": True,
                                      "VolumeType": "gp3"}}],
    )["ImageId"]
    call(ec2.create_tags, "tagging the AMI and its snapshot", Resources=[ami, snapshot],
         Tags=tags(facts, name))
    wait(ec2, "image_available", f"waiting for {ami}", opts, ImageIds=[ami])
    if opts.public:
        call(ec2.modify_image_attribute, f"making {ami} public",
             "the account may block public AMIs: see `aws ec2 "
             "get-image-block-public-access-state`",
             ImageId=ami, LaunchPermission={"Add": [{"Group": "all"}]})
    progress.say(f"    registered {ami} ({name}, {facts.architecture}, UEFI, ENA, IMDSv2)")
    return str(ami)
