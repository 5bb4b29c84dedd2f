#!/bin/sh
# minio-init (quay.io/minio/mc): the two stores of deploy/policy.compose.yaml and one
# least-privilege user per Airflow connection. Idempotent: safe on every `docker compose up`.
#   primary  HMS_PRIMARY_BUCKET   hms_storage reads, writes and deletes here
#   offsite  HMS_OFFSITE_BUCKET   object lock on, default COMPLIANCE retention of
#                                 HMS_OFFSITE_RETENTION_DAYS (the policy's offsite.object_lock.days,
#                                 which hms_offsite_sync also gives each upload): nobody, not even
#                                 the root user, can delete a version before then
set -eu
: "${MINIO_URL:?}" "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${HMS_PRIMARY_BUCKET:?}" "${HMS_OFFSITE_BUCKET:?}" "${HMS_OFFSITE_RETENTION_DAYS:?}"
: "${HMS_S3_ACCESS_KEY:?}" "${HMS_S3_SECRET_KEY:?}" "${HMS_OFFSITE_ACCESS_KEY:?}" "${HMS_OFFSITE_SECRET_KEY:?}"

# The alias comes from the environment, so the root password never appears in an argv.
scheme=${MINIO_URL%%://*}
export MC_HOST_hms="$scheme://$MINIO_ROOT_USER:$MINIO_ROOT_PASSWORD@${MINIO_URL#*://}"

mc ready hms
mc mb --ignore-existing "hms/$HMS_PRIMARY_BUCKET"
mc mb --ignore-existing --with-lock "hms/$HMS_OFFSITE_BUCKET"
mc retention set --default COMPLIANCE "${HMS_OFFSITE_RETENTION_DAYS}d" "hms/$HMS_OFFSITE_BUCKET"
# A bucket created earlier without --with-lock cannot get object lock afterwards: fail loudly.
# (Shell pattern matching, not grep: the mc image is minimal.)
case $(mc retention info --default "hms/$HMS_OFFSITE_BUCKET") in
    *COMPLIANCE*) ;;
    *) echo "minio-init: bucket $HMS_OFFSITE_BUCKET has no default COMPLIANCE retention (created without object lock?)" >&2
       exit 1 ;;
esac

bucket_policy() {  # $1 = bucket: what hms_dr.store.s3 does there, no more
    # Objects and their versions: read, write, delete, abort uploads; put and read the retention
    # of locked uploads (offsite). Not granted: bypassing governance retention, legal holds,
    # changing the bucket's lock configuration, deleting the bucket.
    cat <<JSON
{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow",
   "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:ListBucketVersions",
              "s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration"],
   "Resource": ["arn:aws:s3:::$1"]},
  {"Effect": "Allow",
   "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
              "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
              "s3:GetObjectRetention", "s3:PutObjectRetention", "s3:GetObjectLegalHold"],
   "Resource": ["arn:aws:s3:::$1/*"]}
]}
JSON
}

grant() {  # $1 = policy name, $2 = bucket, $3 = access key, $4 = secret key
    file=$(mktemp)
    bucket_policy "$2" > "$file"
    mc admin policy create hms "$1" "$file"
    rm -f "$file"
    mc admin user add hms "$3" "$4" >/dev/null
    if ! mc admin policy attach hms "$1" --user "$3" 2>/dev/null; then
        # attach refuses a policy that is already attached; anything else is an error
        case $(mc admin user info hms "$3") in
            *"$1"*) ;;
            *) echo "minio-init: cannot attach policy $1 to $3" >&2; exit 1 ;;
        esac
    fi
    echo "minio-init: user $3 may use bucket $2 (policy $1)"
}

grant hms-dr-primary "$HMS_PRIMARY_BUCKET" "$HMS_S3_ACCESS_KEY" "$HMS_S3_SECRET_KEY"
grant hms-dr-offsite "$HMS_OFFSITE_BUCKET" "$HMS_OFFSITE_ACCESS_KEY" "$HMS_OFFSITE_SECRET_KEY"
echo "minio-init: buckets $HMS_PRIMARY_BUCKET and $HMS_OFFSITE_BUCKET ready"
