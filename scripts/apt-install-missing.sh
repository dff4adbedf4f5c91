# Sourced by the install scripts: apt_install_missing NAME PKG... installs the
# Debian packages that are not installed yet (quiet when none are missing).
apt_install_missing() {
    local who=$1; shift
    local missing="" p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "$who: need root to install:$missing" >&2
        return 1
    fi
    # Preseeds that matter only when their package is installed.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    echo "postfix postfix/mailname string localhost.localdomain" | debconf-set-selections
    echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
}
