#!/usr/bin/env bash
# Write the .env that docker-compose.yaml reads: every secret of deploy/.env.example filled with a
# fresh random value, a new gpg key pair for the backups (or an existing one, --key), and the
# key's fingerprint written into the compose policy (encryption.key_id).
#
#   deploy/new-env.sh [--output .env] [--policy deploy/policy.compose.yaml]
#                     [--key FINGERPRINT --gnupg-home DIR]   # export this key instead of a new one;
#                                                            # its passphrase in $HMS_RESTORE_KEY_PASSPHRASE
# The SMTP login for alerts comes from $HMS_SMTP_LOGIN and $HMS_SMTP_PASSWORD (empty: an open relay).
#
# Needs bash, gpg, od, base64 and awk. Refuses to overwrite an existing output file. The output is
# mode 0600 and holds every credential of the deployment: never commit it; keep the restore key
# and its passphrase (HMS_RESTORE_PRIVATE_KEY, HMS_RESTORE_KEY_PASSPHRASE) in your vault as well.
set -euo pipefail

deploy_dir=$(cd "$(dirname "$0")" && pwd)
repo_dir=$(dirname "$deploy_dir")
example=$deploy_dir/.env.example
output=$repo_dir/.env
policy=$deploy_dir/policy.compose.yaml
key=""
gnupg_home=""
uid="HMS DR backups <hms-dr-backups@example.invalid>"

die() { echo "new-env: $*" >&2; exit 1; }

while (($#)); do
    case $1 in
        --output) output=${2:?--output needs a path}; shift 2 ;;
        --policy) policy=${2:?--policy needs a path}; shift 2 ;;
        --key) key=${2:?--key needs a fingerprint}; shift 2 ;;
        --gnupg-home) gnupg_home=${2:?--gnupg-home needs a directory}; shift 2 ;;
        --uid) uid=${2:?--uid needs a user id}; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[[ -e $output ]] && die "$output exists: remove it first (it holds the current deployment's secrets)"
[[ -r $example ]] || die "$example is missing"
[[ -w $policy ]] || die "policy $policy is missing or not writable"
[[ -n $key && -z $gnupg_home ]] && die "--key needs --gnupg-home"
command -v gpg >/dev/null || die "gpg not found (apt-get install gnupg)"

random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
fernet_key() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n'; }
one_line() { awk '{printf "%s\\n", $0}'; }   # newlines -> the two characters \n (JSON escapes)

declare -A value=(
    [AIRFLOW_ADMIN_PASSWORD]=$(random_hex 12)
    [AIRFLOW_DB_PASSWORD]=$(random_hex 24)
    [REDIS_PASSWORD]=$(random_hex 24)
    [AIRFLOW_FERNET_KEY]=$(fernet_key)
    [AIRFLOW_JWT_SECRET]=$(random_hex 32)
    [AIRFLOW_API_SECRET_KEY]=$(random_hex 32)
    [HMS_POSTGRES_PASSWORD]=$(random_hex 24)
    [HMS_ADMIN_PASSWORD]=$(random_hex 24)
    [HMS_BACKUP_PASSWORD]=$(random_hex 24)
    [HMS_REPLICA_PASSWORD]=$(random_hex 24)
    [HMS_RESTORE_TARGET_PASSWORD]=$(random_hex 24)
    [MINIO_ROOT_USER]=hms-root-$(random_hex 4)
    [MINIO_ROOT_PASSWORD]=$(random_hex 24)
    [HMS_S3_ACCESS_KEY]=hms-dr-$(random_hex 6)
    [HMS_S3_SECRET_KEY]=$(random_hex 24)
    [HMS_OFFSITE_ACCESS_KEY]=hms-offsite-$(random_hex 6)
    [HMS_OFFSITE_SECRET_KEY]=$(random_hex 24)
    # alerts: the operator's SMTP login, from the environment; empty for an open relay
    [HMS_SMTP_LOGIN]=${HMS_SMTP_LOGIN:-}
    [HMS_SMTP_PASSWORD]=${HMS_SMTP_PASSWORD:-}
)

# ---- the gpg key pair: passphrases reach gpg on standard input, never on the command line
cleanup_home=""
if [[ -z $key ]]; then
    gnupg_home=$(mktemp -d)
    cleanup_home=$gnupg_home
    passphrase=$(random_hex 24)
else
    passphrase=${HMS_RESTORE_KEY_PASSPHRASE:?set HMS_RESTORE_KEY_PASSPHRASE to the passphrase of key $key}
fi
cleanup() {
    gpgconf --homedir "$gnupg_home" --kill all >/dev/null 2>&1 || true
    [[ -n $cleanup_home ]] && rm -rf "$cleanup_home"
    return 0
}
trap cleanup EXIT
gpg_batch() { gpg --homedir "$gnupg_home" --batch --no-tty --quiet "$@"; }
with_passphrase() { printf '%s\n' "$passphrase" | gpg_batch --pinentry-mode loopback --passphrase-fd 0 "$@"; }

if [[ -z $key ]]; then
    chmod 0700 "$gnupg_home"
    with_passphrase --quick-gen-key "$uid" rsa3072 cert,sign never || die "gpg could not generate a key pair"
    key=$(gpg_batch --with-colons --fixed-list-mode --list-keys -- "=$uid" | awk -F: '$1 == "fpr" {print $10; exit}')
    with_passphrase --quick-add-key "$key" rsa3072 encr never || die "gpg could not add the encryption subkey"
fi
key=$(tr -d ' ' <<<"$key" | tr '[:lower:]' '[:upper:]')
[[ $key =~ ^[0-9A-F]{40}$ ]] || die "key fingerprint '$key' is not 40 hex digits"
public_key=$(gpg_batch --armor --export "$key")
secret_key=$(with_passphrase --armor --export-secret-keys "$key")
[[ $public_key == *"BEGIN PGP PUBLIC KEY BLOCK"* ]] || die "no public key $key in $gnupg_home"
[[ $secret_key == *"BEGIN PGP PRIVATE KEY BLOCK"* ]] || die "no secret key $key in $gnupg_home (or a wrong passphrase)"
value[HMS_BACKUP_PUBLIC_KEY]=$(one_line <<<"$public_key")
value[HMS_RESTORE_PRIVATE_KEY]=$(one_line <<<"$secret_key")
value[HMS_RESTORE_KEY_PASSPHRASE]=$passphrase

# ---- .env: .env.example with every empty value filled, defaults and comments kept
for name in "${!value[@]}"; do
    [[ ${value[$name]} != *"'"* ]] || die "generated value of $name holds a single quote"
done
umask 077
tmp=$(mktemp "$(dirname "$output")/.env.tmp.XXXXXX")
while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ ^([A-Z_][A-Z0-9_]*)=$ ]]; then
        name=${BASH_REMATCH[1]}
        [[ -n ${value[$name]+set} ]] || { rm -f "$tmp"; die "no generator for $name in $example"; }
        printf "%s='%s'\n" "$name" "${value[$name]}"
    else
        printf '%s\n' "$line"
    fi
done <"$example" >"$tmp"
chmod 0600 "$tmp"
mv "$tmp" "$output"

# ---- the policy names the key backups are encrypted to
sed -i -E "s/^(  key_id: )\"[0-9A-Fa-f]{40}\"/\\1\"$key\"/" "$policy"
grep -q "^  key_id: \"$key\"" "$policy" || die "could not set encryption.key_id in $policy: set it to \"$key\" by hand"

echo "new-env: wrote $output (mode 0600): every credential of this deployment; never commit it"
echo "new-env: backups are encrypted to gpg key $key (encryption.key_id in $policy)"
echo "new-env: Airflow UI login: admin, password AIRFLOW_ADMIN_PASSWORD in $output"
echo "new-env: keep HMS_RESTORE_PRIVATE_KEY and HMS_RESTORE_KEY_PASSPHRASE in your vault too"
