set -o pipefail
PREFIX="$PASSWORD_STORE_DIR"
EXTENSIONS="${PASSWORD_STORE_EXTENSIONS_DIR:-$PREFIX/.extensions}"
X_SELECTION="${PASSWORD_STORE_X_SELECTION:-clipboard}"
CLIP_TIME="${PASSWORD_STORE_CLIP_TIME:-45}"
GENERATED_LENGTH="${PASSWORD_STORE_GENERATED_LENGTH:-25}"
CHARACTER_SET="${PASSWORD_STORE_CHARACTER_SET:-[:punct:][:alnum:]}"
CHARACTER_SET_NO_SYMBOLS="${PASSWORD_STORE_CHARACTER_SET_NO_SYMBOLS:-[:alnum:]}"
GPG_OPTS=( $PASSWORD_STORE_GPG_OPTS --quiet --yes --compress-algo=none --no-encrypt-to )
GPG=gpg
export GPG_TTY="${GPG_TTY:-$(tty 2>/dev/null)}"
command -v gpg2 >/dev/null 2>&1 && GPG=gpg2
[[ -n $GPG_AGENT_INFO || $GPG == gpg2 ]] && GPG_OPTS+=( --batch --use-agent )
unset GIT_DIR GIT_WORK_TREE GIT_NAMESPACE GIT_INDEX_FILE GIT_INDEX_VERSION GIT_OBJECT_DIRECTORY GIT_COMMON_DIR
export GIT_CEILING_DIRECTORIES="$PREFIX/.."
GETOPT=getopt
SHRED="shred -f -z"
BASE64=base64
SYSTEM_EXTENSION_DIR=/usr/lib/password-store/extensions
PROGRAM=pass
COMMAND="$MULTIVERSE_PASS_COMMAND"
unset MULTIVERSE_PASS_COMMAND
set_git() {
	INNER_GIT_DIR="${1%/*}"
	while [[ ! -d $INNER_GIT_DIR && ${INNER_GIT_DIR%/*}/ == "${PREFIX%/}/"* ]]; do
		INNER_GIT_DIR="${INNER_GIT_DIR%/*}"
	done
	[[ $(git -C "$INNER_GIT_DIR" rev-parse --is-inside-work-tree 2>/dev/null) == true ]] || INNER_GIT_DIR=""
}
git_add_file() {
	[[ -n $INNER_GIT_DIR ]] || return
	git -C "$INNER_GIT_DIR" add "$1" || return
	[[ -n $(git -C "$INNER_GIT_DIR" status --porcelain "$1") ]] || return
	git_commit "$2"
}
git_commit() {
	local sign=""
	[[ -n $INNER_GIT_DIR ]] || return
	[[ $(git -C "$INNER_GIT_DIR" config --bool --get pass.signcommits) == "true" ]] && sign="-S"
	git -C "$INNER_GIT_DIR" commit $sign -m "$1"
}
yesno() {
	[[ -t 0 ]] || return 0
	local response
	read -r -p "$1 [y/N] " response
	[[ $response == [yY] ]] || exit 1
}
die() {
	echo "$@" >&2
	exit 1
}
verify_file() {
	[[ -n $PASSWORD_STORE_SIGNING_KEY ]] || return 0
	[[ -f $1.sig ]] || die "Signature for $1 does not exist."
	local fingerprints="$($GPG $PASSWORD_STORE_GPG_OPTS --verify --status-fd=1 "$1.sig" "$1" 2>/dev/null | sed -n 's/^\[GNUPG:\] VALIDSIG \([A-F0-9]\{40\}\) .* \([A-F0-9]\{40\}\)$/\1\n\2/p')"
	local fingerprint found=0
	for fingerprint in $PASSWORD_STORE_SIGNING_KEY; do
		[[ $fingerprint =~ ^[A-F0-9]{40}$ ]] || continue
		[[ $fingerprints == *$fingerprint* ]] && { found=1; break; }
	done
	[[ $found -eq 1 ]] || die "Signature for $1 is invalid."
}
set_gpg_recipients() {
	GPG_RECIPIENT_ARGS=( )
	GPG_RECIPIENTS=( )
	if [[ -n $PASSWORD_STORE_KEY ]]; then
		for gpg_id in $PASSWORD_STORE_KEY; do
			GPG_RECIPIENT_ARGS+=( "-r" "$gpg_id" )
			GPG_RECIPIENTS+=( "$gpg_id" )
		done
		return
	fi
	local current="$PREFIX/$1"
	while [[ $current != "$PREFIX" && ! -f $current/.gpg-id ]]; do
		current="${current%/*}"
	done
	current="$current/.gpg-id"
	if [[ ! -f $current ]]; then
		printf 'Error: You must run:\n    %s init your-gpg-id\nbefore you may use the password store.\n\n' "$PROGRAM" >&2
		cmd_usage
		exit 1
	fi
	verify_file "$current"
	local gpg_id
	while read -r gpg_id; do
		gpg_id="${gpg_id%%#*}"
		[[ -n $gpg_id ]] || continue
		GPG_RECIPIENT_ARGS+=( "-r" "$gpg_id" )
		GPG_RECIPIENTS+=( "$gpg_id" )
	done < "$current"
}
reencrypt_path() {
	die "Error: reencrypt_path is not available to extensions of $PROGRAM here; run \`$PROGRAM init [-p SUBFOLDER] GPG-ID…\`, which re-encrypts what needs it."
}
check_sneaky_paths() {
	local path
	for path in "$@"; do
		[[ $path =~ /\.\.$ || $path =~ ^\.\./ || $path =~ /\.\./ || $path =~ ^\.\.$ ]] && die "Error: You've attempted to pass a sneaky path to pass. Go home."
	done
}
clip() {
	[[ -n $WAYLAND_DISPLAY || -n $DISPLAY ]] || die "Error: No X11 or Wayland display detected"
	printf '%s' "$1" | PASSWORD_STORE_X_SELECTION="$X_SELECTION" PASSWORD_STORE_CLIP_TIME="$CLIP_TIME" "${MULTIVERSE[@]}" __clip "$2" || exit 1
}
qrcode() {
	if ! type qrencode >/dev/null 2>&1; then
		echo "$PROGRAM: qrencode: command not found" >&2
		return 127
	fi
	if [[ -n $DISPLAY || -n $WAYLAND_DISPLAY ]]; then
		if type feh >/dev/null 2>&1; then
			echo -n "$1" | qrencode --size 10 -o - | feh -x --title "pass: $2" -g +200+200 -
			return
		elif type gm >/dev/null 2>&1; then
			echo -n "$1" | qrencode --size 10 -o - | gm display -title "pass: $2" -geometry +200+200 -
			return
		elif type display >/dev/null 2>&1; then
			echo -n "$1" | qrencode --size 10 -o - | display -title "pass: $2" -geometry +200+200 -
			return
		fi
	fi
	echo -n "$1" | qrencode -t utf8
}
tmpdir() {
	[[ -n $SECURE_TMPDIR ]] && return
	local warn=1
	[[ $1 == "nowarn" ]] && warn=0
	local template="$PROGRAM.XXXXXXXXXXXXX"
	if [[ -d /dev/shm && -w /dev/shm && -x /dev/shm ]]; then
		SECURE_TMPDIR="$(mktemp -d "/dev/shm/$template")"
		remove_tmpfile() {
			rm -rf "$SECURE_TMPDIR"
		}
		trap remove_tmpfile EXIT
	else
		[[ $warn -eq 1 ]] && yesno "$(printf '%s\n' \
			"Your system does not have /dev/shm, which means that it may" \
			"be difficult to entirely erase the temporary non-encrypted" \
			"password file after editing." \
			"" \
			"Are you sure you would like to continue?")"
		SECURE_TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/$template")"
		shred_tmpfile() {
			find "$SECURE_TMPDIR" -type f -exec $SHRED {} +
			rm -rf "$SECURE_TMPDIR"
		}
		trap shred_tmpfile EXIT
	fi
}
cmd_show() { "${MULTIVERSE[@]}" show "$@"; }
cmd_extension_or_show() { "${MULTIVERSE[@]}" "$@"; }
cmd_extension() { "${MULTIVERSE[@]}" "$@"; }
cmd_insert() { "${MULTIVERSE[@]}" insert "$@"; }
cmd_edit() { "${MULTIVERSE[@]}" edit "$@"; }
cmd_generate() { "${MULTIVERSE[@]}" generate "$@"; }
cmd_delete() { "${MULTIVERSE[@]}" rm "$@"; }
cmd_copy_move() { local w="$1"; shift; if [[ $w == copy ]]; then "${MULTIVERSE[@]}" cp "$@"; else "${MULTIVERSE[@]}" mv "$@"; fi; }
cmd_find() { "${MULTIVERSE[@]}" find "$@"; }
cmd_grep() { "${MULTIVERSE[@]}" grep "$@"; }
cmd_init() { "${MULTIVERSE[@]}" init "$@"; }
cmd_git() { "${MULTIVERSE[@]}" git "$@"; }
cmd_otp() { "${MULTIVERSE[@]}" otp "$@"; }
cmd_version() { "${MULTIVERSE[@]}" version; }
cmd_usage() { "${MULTIVERSE[@]}" help; }
