"""`osbuilder publish ami` against moto's in-process AWS (S3 multipart, snapshots,
register-image, tags, waiters, launch permissions); EC2's import service, which moto
lacks, is a TEST DOUBLE (tests/helpers/ec2_import_double.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from osbuilder.host.progress import Progress
from osbuilder.host.publish.ec2_ami import PublishOptions, publish_ami
from osbuilder.shared.errors import ExitCode, OsbError
from tests.helpers.ec2_import_double import ImportServiceDouble

REGION = "eu-west-1"
MIB = 1 << 20


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def built_image(tmp_path: Path, arch: str = "arm64", board: str = "ec2-a1") -> Path:
    """What `osbuilder build --format ami` leaves: the raw image and its .ami.json."""
    img = tmp_path / f"osbuilder-{board}-1.2.0.img"
    img.write_bytes(os.urandom(12 * MIB))
    img.with_name(img.stem + ".ami.json").write_text(json.dumps({
        "architecture": arch, "board": board, "boot_mode": "uefi", "image": img.name,
        "size_bytes": img.stat().st_size, "version": "1.2.0"}))
    return img


def bucket(name: str = "osb-images") -> str:
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def options(**kw: Any) -> PublishOptions:
    # 5 MiB parts (S3's minimum) so a 12 MiB image goes up in three; no real waiting
    return PublishOptions(**{"region": REGION, "bucket": "osb-images",
                             "part_size": 5 * MIB, "poll_seconds": 0.01, **kw})


def test_full_publish_flow(tmp_path: Path) -> None:
    img = built_image(tmp_path)
    bucket()
    aws = boto3.Session(region_name=REGION)
    double = ImportServiceDouble(aws, REGION, polls=2).install()
    log = io.StringIO()
    done = publish_ami(img, options(public=True), Progress(log), aws)

    ec2 = boto3.client("ec2", region_name=REGION)
    [image] = ec2.describe_images(ImageIds=[done.ami_id])["Images"]
    assert image["Name"] == done.name == "osbuilder-ec2-a1-1.2.0"
    assert image["State"] == "available"
    expected_tags = {"Name": "osbuilder-ec2-a1-1.2.0", "osbuilder:version": "1.2.0",
                     "osbuilder:board": "ec2-a1"}
    assert {t["Key"]: t["Value"] for t in image["Tags"]} == expected_tags
    [snap] = ec2.describe_snapshots(SnapshotIds=[done.snapshot_id])["Snapshots"]
    assert {t["Key"]: t["Value"] for t in snap["Tags"]} == expected_tags
    assert snap["VolumeSize"] == 1  # 12 MiB, rounded up to whole GiB as EC2 does
    perms = ec2.describe_image_attribute(ImageId=done.ami_id, Attribute="launchPermission")
    assert perms["LaunchPermissions"] == [{"Group": "all"}]
    # moto accepts but does not keep these register-image fields: check what was sent
    [reg] = double.params["RegisterImage"]
    assert reg["Architecture"] == "arm64" and reg["BootMode"] == "uefi"
    assert reg["EnaSupport"] is True and reg["ImdsSupport"] == "v2.0"
    assert reg["BlockDeviceMappings"] == [{"DeviceName": "/dev/xvda", "Ebs": {
        "SnapshotId": done.snapshot_id, "DeleteOnTermination": True, "VolumeType": "gp3"}}]
    [imp] = double.params["ImportSnapshot"]
    assert imp["DiskContainer"] == {"Description": done.name, "Format": "RAW", "UserBucket": {
        "S3Bucket": "osb-images", "S3Key": "osbuilder/osbuilder-ec2-a1-1.2.0.img"}}
    # the upload went in three parts and is gone once imported
    calls = done.calls.counts
    assert calls["s3:CreateMultipartUpload"] == 1 and calls["s3:UploadPart"] == 3
    assert calls["s3:CompleteMultipartUpload"] == 1 and calls["s3:DeleteObject"] == 1
    assert calls["ec2:DescribeImportSnapshotTasks"] == 3  # active, active, completed
    assert "Contents" not in boto3.client("s3", region_name=REGION).list_objects_v2(
        Bucket="osb-images")
    out = log.getvalue()
    assert "uploading osbuilder-ec2-a1-1.2.0.img -> s3://osb-images/" in out
    assert "active 30% converting" in out and f"registered {done.ami_id}" in out
    print(f"\nAMI publish: {done.calls.total} AWS API calls ({done.calls.summary()})")
    # the figure: every call a publish makes, with 3 upload parts and 3 import polls
    assert dict(calls) == {
        "ec2:DescribeImages": 2,  # name taken?, then the image_available waiter
        "s3:HeadBucket": 1, "s3:CreateMultipartUpload": 1, "s3:UploadPart": 3,
        "s3:CompleteMultipartUpload": 1, "ec2:ImportSnapshot": 1,
        "ec2:DescribeImportSnapshotTasks": 3, "ec2:DescribeSnapshots": 1,
        "s3:DeleteObject": 1, "ec2:RegisterImage": 1, "ec2:CreateTags": 1,
        "ec2:ModifyImageAttribute": 1}
    assert done.calls.total == 17


def test_amd64_image_registers_as_x86_64(tmp_path: Path) -> None:
    img = built_image(tmp_path, "x86_64", "ec2-amd64")
    bucket()
    aws = boto3.Session(region_name=REGION)
    double = ImportServiceDouble(aws, REGION, polls=0).install()
    done = publish_ami(img.with_name(img.stem + ".ami.json"), options(name="edge amd64 (test)"),
                       Progress(io.StringIO()), aws)
    assert double.params["RegisterImage"][0]["Architecture"] == "x86_64"
    assert done.name == "edge amd64 (test)" and "ModifyImageAttribute" not in double.params
    assert done.calls.counts["s3:UploadPart"] == 3


def test_missing_bucket(tmp_path: Path) -> None:
    aws = boto3.Session(region_name=REGION)
    double = ImportServiceDouble(aws, REGION).install()
    with pytest.raises(OsbError, match=r"--bucket osb-images: no such bucket \(create it in "
                                       r"eu-west-1"):
        publish_ami(built_image(tmp_path), options(), Progress(io.StringIO()), aws)
    assert "ImportSnapshot" not in double.params


@set_initial_no_auth_action_count(4)
def test_access_denied(tmp_path: Path) -> None:
    """moto enforcing IAM: a user allowed EC2 only cannot touch the bucket."""
    bucket()
    iam = boto3.client("iam", region_name=REGION)
    iam.create_user(UserName="ec2-only")
    iam.put_user_policy(UserName="ec2-only", PolicyName="ec2", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="ec2-only")["AccessKey"]
    aws = boto3.Session(region_name=REGION, aws_access_key_id=key["AccessKeyId"],
                        aws_secret_access_key=key["SecretAccessKey"])
    with pytest.raises(OsbError, match=r"--bucket osb-images: access denied: the credentials "
                                       r"need s3:ListBucket, s3:PutObject"):
        publish_ami(built_image(tmp_path), options(), Progress(io.StringIO()), aws)


def test_import_failure_is_reported_and_upload_removed(tmp_path: Path) -> None:
    bucket()
    aws = boto3.Session(region_name=REGION)
    ImportServiceDouble(aws, REGION, polls=1,
                        fail_with="ClientError: Disk validation failed [Unsupported specified "
                                  "file format]").install()
    with pytest.raises(OsbError, match=r"import-snapshot import-snap-0+1 failed: ClientError: "
                                       r"Disk validation failed"):
        publish_ami(built_image(tmp_path), options(), Progress(io.StringIO()), aws)
    s3 = boto3.client("s3", region_name=REGION)
    assert "Contents" not in s3.list_objects_v2(Bucket="osb-images")
    assert boto3.client("ec2", region_name=REGION).describe_images(Owners=["self"])[
        "Images"] == []


def test_name_taken_and_bad_inputs(tmp_path: Path) -> None:
    img = built_image(tmp_path)
    bucket()
    aws = boto3.Session(region_name=REGION)
    ImportServiceDouble(aws, REGION, polls=0).install()
    first = publish_ami(img, options(), Progress(io.StringIO()), aws)
    with pytest.raises(OsbError, match=rf"an AMI named 'osbuilder-ec2-a1-1.2.0' already "
                                       rf"exists in eu-west-1 \({first.ami_id}\)"):
        publish_ami(img, options(), Progress(io.StringIO()), aws)
    with pytest.raises(OsbError, match=r"--name 'a\*b': an AMI name is 3-128"):
        publish_ami(img, options(name="a*b"), Progress(io.StringIO()), aws)
    img.write_bytes(b"shorter")
    with pytest.raises(OsbError, match=r"the image changed since it was built"):
        publish_ami(img, options(), Progress(io.StringIO()), aws)
    with pytest.raises(OsbError, match=r"IMAGE: .*nope.ami.json not found: build with "
                                       r"--format ami"):
        publish_ami(tmp_path / "nope.img", options(), Progress(io.StringIO()), aws)


def test_cli_publish_needs_a_built_ami(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "osbuilder", "publish", "ami", "--region",
                        REGION, "--bucket", "b", str(tmp_path / "x.img")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == ExitCode.BAD_INPUT
    assert "x.ami.json not found: build with --format ami" in r.stderr
    r = subprocess.run([sys.executable, "-m", "osbuilder", "publish", "ami", "x.img"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == ExitCode.USAGE and "--region" in r.stderr and "required" in r.stderr
