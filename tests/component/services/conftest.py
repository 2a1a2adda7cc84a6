from tests.support.s3 import seaweedfs_s3

__all__ = ["seaweedfs_s3"]
