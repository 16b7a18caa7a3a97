/* opts.c - metastored's command line (see opts.h for the grammar and the rules).
 *
 * Hand-rolled rather than getopt_long (whose state is global) or fuse_opt_parse (which would
 * let unknown options through to the mount): every argument is either understood or refused
 * with a message that names it.
 */
#include "opts.h"

#include "sm.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OPTS_VERSION "0.1.0"

static int fail(char *err, size_t err_len, const char *fmt, ...)
{
	if (err && err_len) {
		int n = snprintf(err, err_len, "metastored: ");
		va_list ap;
		va_start(ap, fmt);
		if (n >= 0 && (size_t)n < err_len) vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

void opts_usage(FILE *f)
{
	fprintf(f,
	        "usage: metastored --id N [--peers 1=HOST:PORT,2=HOST:PORT,...] --data DIR\n"
	        "                  [--engine memory|rocksdb] [--token-file FILE] [--value-max BYTES]\n"
	        "                  [--foreground|-f] [--log-level error|warn|info|debug]\n"
	        "                  [-o OPT[,OPT...]] MOUNTPOINT\n"
	        "\n"
	        "  --id N            this node's id (1..%u), one of the --peers ids\n"
	        "  --peers LIST      every member, self included; none = a one-node cluster\n"
	        "  --data DIR        Raft log, snapshots, boot epoch, rocksdb files\n"
	        "  --engine KIND     memory (default; rebuilt from the Raft log) or rocksdb\n"
	        "  --token-file F    shared cluster token (mode 0600); required with --peers\n"
	        "  --value-max B     largest file value, e.g. 1M (default and maximum 8M)\n"
	        "  -f, --foreground  stay in the foreground (default: return once mounted)\n"
	        "  -o OPTS           local_reads, inotify=on|off, allow_other, allow_root, ro, rw,\n"
	        "                    [no]dev, [no]suid, [no]exec, [no|rel]atime, fsname=, subtype=,\n"
	        "                    max_read=\n",
	        OPTS_NODE_ID_MAX);
}

static int parse_u64(const char *s, uint64_t *out)
{
	if (!s || !*s || !isdigit((unsigned char)*s)) return -EINVAL;
	errno = 0;
	char *end = NULL;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end) return -EINVAL;
	*out = v;
	return 0;
}

int opts_parse_bytes(const char *s, uint64_t max, uint64_t *out)
{
	assert(out);
	if (!s || !*s || !isdigit((unsigned char)*s)) return -EINVAL;
	errno = 0;
	char *end = NULL;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno == ERANGE) return -ERANGE;
	if (errno) return -EINVAL;
	unsigned shift = 0;
	if (*end == 'K' || *end == 'k')
		shift = 10, end++;
	else if (*end == 'M' || *end == 'm')
		shift = 20, end++;
	else if (*end == 'G' || *end == 'g')
		shift = 30, end++;
	if (*end == 'i' && shift) end++;
	if ((*end == 'B' || *end == 'b') && shift) end++;
	if (*end) return -EINVAL;
	if (v > (UINT64_MAX >> shift)) return -ERANGE;
	v <<= shift;
	if (v == 0 || v > max) return -ERANGE;
	*out = v;
	return 0;
}

int opts_parse_peers(const char *s, raft_peer_addr_t *peers, uint32_t *n_peers, char *err, size_t err_len)
{
	assert(s && peers && n_peers);
	*n_peers = 0;
	const char *p = s;
	if (!*p) return fail(err, err_len, "--peers: empty list");
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		char item[128];
		if (len == 0) return fail(err, err_len, "--peers: empty item in '%s'", s);
		if (len >= sizeof item) return fail(err, err_len, "--peers: item too long in '%s'", s);
		memcpy(item, p, len);
		item[len] = '\0';
		if (*n_peers == RAFT_NODE_PEERS_MAX)
			return fail(err, err_len, "--peers: more than %u members", RAFT_NODE_PEERS_MAX);
		char *eq = strchr(item, '=');
		char *colon = strrchr(item, ':');
		if (!eq || !colon || colon < eq)
			return fail(err, err_len, "--peers: '%s' is not ID=HOST:PORT", item);
		*eq = '\0';
		*colon = '\0';
		uint64_t id = 0, port = 0;
		const char *host = eq + 1;
		if (parse_u64(item, &id) || id < 1 || id > OPTS_NODE_ID_MAX)
			return fail(err, err_len, "--peers: id '%s' is not 1..%u", item, OPTS_NODE_ID_MAX);
		if (parse_u64(colon + 1, &port) || port < 1 || port > 65535)
			return fail(err, err_len, "--peers: port '%s' of node %llu is not 1..65535",
			            colon + 1, (unsigned long long)id);
		size_t hl = strlen(host);
		if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') host++, hl -= 2; /* [v6] */
		if (hl == 0 || hl >= sizeof peers[0].host)
			return fail(err, err_len, "--peers: host of node %llu is empty or too long",
			            (unsigned long long)id);
		for (uint32_t i = 0; i < *n_peers; i++)
			if (peers[i].id == id)
				return fail(err, err_len, "--peers: id %llu twice", (unsigned long long)id);
		raft_peer_addr_t *pa = &peers[(*n_peers)++];
		memset(pa, 0, sizeof *pa);
		pa->id = (uint32_t)id;
		memcpy(pa->host, host, hl);
		pa->host[hl] = '\0';
		pa->port = (uint16_t)port;
		p += len;
		if (*p == ',') {
			p++;
			if (!*p) return fail(err, err_len, "--peers: trailing ',' in '%s'", s);
		}
	}
	return 0;
}

/* FUSE mount options we pass on (name, takes a value). */
static const struct {
	const char *name;
	bool value;
} fuse_pass[] = {
    {"allow_other", false}, {"allow_root", false}, {"ro", false},     {"rw", false},
    {"dev", false},         {"nodev", false},      {"suid", false},   {"nosuid", false},
    {"exec", false},        {"noexec", false},     {"atime", false},  {"noatime", false},
    {"relatime", false},    {"fsname", true},      {"subtype", true}, {"max_read", true},
};

static const char *const ignored[] = {"auto",
                                      "noauto",
                                      "user",
                                      "users",
                                      "nofail",
                                      "_netdev",
                                      "defaults",
                                      "nouser",
                                      "owner",
                                      "comment",
                                      "default_permissions"};

static int append_fuse_opt(opts_t *o, const char *opt, size_t len, char *err, size_t err_len)
{
	size_t cur = strlen(o->fuse_opts);
	if (cur + len + 2 > sizeof o->fuse_opts) return fail(err, err_len, "-o: options too long");
	if (cur) o->fuse_opts[cur++] = ',';
	memcpy(o->fuse_opts + cur, opt, len);
	o->fuse_opts[cur + len] = '\0';
	return 0;
}

static int parse_one_o(opts_t *o, const char *opt, size_t len, char *err, size_t err_len)
{
	char name[64];
	const char *eq = memchr(opt, '=', len);
	size_t nl = eq ? (size_t)(eq - opt) : len;
	const char *val = eq ? eq + 1 : NULL;
	size_t vl = eq ? len - nl - 1 : 0;
	if (nl == 0 || nl >= sizeof name) return fail(err, err_len, "-o: bad option '%.*s'", (int)len, opt);
	memcpy(name, opt, nl);
	name[nl] = '\0';
	if (!strcmp(name, "local_reads") && !val) {
		o->local_reads = true;
		return 0;
	}
	if (!strcmp(name, "inotify") && val) {
		if (vl == 2 && !memcmp(val, "on", 2))
			o->inotify = true;
		else if (vl == 3 && !memcmp(val, "off", 3))
			o->inotify = false;
		else
			return fail(err, err_len, "-o inotify=%.*s: expected on or off", (int)vl, val);
		return 0;
	}
	if (!strncmp(name, "x-", 2)) return 0;
	for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
		if (!strcmp(name, ignored[i])) return 0;
	for (size_t i = 0; i < sizeof fuse_pass / sizeof fuse_pass[0]; i++) {
		if (strcmp(name, fuse_pass[i].name)) continue;
		if (fuse_pass[i].value != (val != NULL) || (val && vl == 0))
			return fail(err, err_len, "-o %s: %s", name,
			            fuse_pass[i].value ? "needs a value" : "takes no value");
		if (!strcmp(name, "allow_other")) o->allow_other = true;
		if (!strcmp(name, "ro")) o->read_only = true;
		if (!strcmp(name, "rw")) o->read_only = false;
		return append_fuse_opt(o, opt, len, err, err_len);
	}
	return fail(err, err_len, "-o: unknown option '%.*s'", (int)len, opt);
}

static int parse_o(opts_t *o, const char *s, char *err, size_t err_len)
{
	while (*s) {
		const char *end = strchr(s, ',');
		size_t len = end ? (size_t)(end - s) : strlen(s);
		if (len) {
			int rc = parse_one_o(o, s, len, err, err_len);
			if (rc) return rc;
		}
		s += len;
		if (*s == ',') s++;
	}
	return 0;
}

/* "--name value" or "--name=value"; advances *i past what it used. */
static const char *long_value(int argc, char *const argv[], int *i, const char *name, char *err,
                              size_t err_len, int *rc)
{
	const char *a = argv[*i];
	size_t nl = strlen(name);
	if (a[nl] == '=') return a + nl + 1;
	if (*i + 1 >= argc) {
		*rc = fail(err, err_len, "%s needs a value", name);
		return NULL;
	}
	return argv[++*i];
}

static bool is_opt(const char *a, const char *name)
{
	size_t nl = strlen(name);
	return strncmp(a, name, nl) == 0 && (a[nl] == '\0' || a[nl] == '=');
}

static int check_done(opts_t *o, bool have_id, char *err, size_t err_len)
{
	if (!have_id) return fail(err, err_len, "--id is required");
	if (!o->data_dir || !*o->data_dir) return fail(err, err_len, "--data is required");
	if (!o->mountpoint) return fail(err, err_len, "no mount point given");
	if (o->single) {
		o->n_peers = 1;
		memset(&o->peers[0], 0, sizeof o->peers[0]);
		o->peers[0].id = o->id;
		strcpy(o->peers[0].host, "127.0.0.1");
		o->peers[0].port = 0;
		return 0;
	}
	bool self = false;
	for (uint32_t i = 0; i < o->n_peers; i++)
		self |= o->peers[i].id == o->id;
	if (!self) return fail(err, err_len, "--id %u is not in --peers", o->id);
	if (o->n_peers > 1 && !o->token_file)
		return fail(err, err_len, "--token-file is required with more than one peer");
	return 0;
}

int opts_parse(int argc, char *const argv[], opts_t *o, char *err, size_t err_len)
{
	assert(argc >= 0 && o);
	memset(o, 0, sizeof *o);
	o->single = true;
	o->engine = "memory";
	o->value_bytes_max = SM_VALUE_BYTES_MAX_DEFAULT;
	o->log_level = LOG_INFO;
	o->inotify = true;
	bool have_id = false, have_peers = false, only_positional = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		int rc = 0;
		const char *v = NULL;
		if (only_positional || a[0] != '-' || a[1] == '\0') {
			if (o->mountpoint)
				return fail(err, err_len, "more than one mount point ('%s', '%s')",
				            o->mountpoint, a);
			o->mountpoint = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_positional = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			opts_usage(stdout);
			return 1;
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("metastored %s\n", OPTS_VERSION);
			return 1;
		} else if (!strcmp(a, "-f") || !strcmp(a, "--foreground")) {
			o->foreground = true;
		} else if (!strncmp(a, "-o", 2) && strncmp(a, "--", 2)) {
			v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
			if (!v) return fail(err, err_len, "-o needs a value");
			if ((rc = parse_o(o, v, err, err_len))) return rc;
		} else if (is_opt(a, "--id")) {
			uint64_t id = 0;
			if (!(v = long_value(argc, argv, &i, "--id", err, err_len, &rc))) return rc;
			if (parse_u64(v, &id) || id < 1 || id > OPTS_NODE_ID_MAX)
				return fail(err, err_len, "--id '%s' is not 1..%u", v, OPTS_NODE_ID_MAX);
			o->id = (uint32_t)id;
			have_id = true;
		} else if (is_opt(a, "--peers")) {
			if (!(v = long_value(argc, argv, &i, "--peers", err, err_len, &rc))) return rc;
			if ((rc = opts_parse_peers(v, o->peers, &o->n_peers, err, err_len))) return rc;
			have_peers = true;
			o->single = false;
		} else if (is_opt(a, "--data")) {
			if (!(v = long_value(argc, argv, &i, "--data", err, err_len, &rc))) return rc;
			o->data_dir = v;
		} else if (is_opt(a, "--engine")) {
			if (!(v = long_value(argc, argv, &i, "--engine", err, err_len, &rc))) return rc;
			if (strcmp(v, "memory") && strcmp(v, "rocksdb"))
				return fail(err, err_len, "--engine '%s': expected memory or rocksdb", v);
			o->engine = v;
		} else if (is_opt(a, "--token-file")) {
			if (!(v = long_value(argc, argv, &i, "--token-file", err, err_len, &rc))) return rc;
			if (!*v) return fail(err, err_len, "--token-file: empty path");
			o->token_file = v;
		} else if (is_opt(a, "--value-max")) {
			if (!(v = long_value(argc, argv, &i, "--value-max", err, err_len, &rc))) return rc;
			rc = opts_parse_bytes(v, SM_VALUE_BYTES_MAX_DEFAULT, &o->value_bytes_max);
			if (rc)
				return fail(err, err_len,
				            "--value-max '%s': expected 1..%u bytes (K/M suffixes allowed)",
				            v, SM_VALUE_BYTES_MAX_DEFAULT);
		} else if (is_opt(a, "--log-level")) {
			if (!(v = long_value(argc, argv, &i, "--log-level", err, err_len, &rc))) return rc;
			if (!strcmp(v, "error"))
				o->log_level = LOG_ERROR;
			else if (!strcmp(v, "warn"))
				o->log_level = LOG_WARN;
			else if (!strcmp(v, "info"))
				o->log_level = LOG_INFO;
			else if (!strcmp(v, "debug"))
				o->log_level = LOG_DEBUG;
			else
				return fail(err, err_len,
				            "--log-level '%s': expected error, warn, info or debug", v);
		} else {
			return fail(err, err_len, "unknown option '%s' (see --help)", a);
		}
	}
	(void)have_peers;
	return check_done(o, have_id, err, err_len);
}

int opts_read_token(const char *path, uint8_t *buf, size_t cap, char *err, size_t err_len)
{
	assert(path && buf && cap > 0);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int e = errno;
		fail(err, err_len, "token file %s: %s", path, strerror(e));
		return -e;
	}
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		fail(err, err_len, "token file %s: %s", path, strerror(-rc));
	} else if (!S_ISREG(st.st_mode)) {
		rc = fail(err, err_len, "token file %s: not a regular file", path);
	} else if (st.st_mode & 077) {
		rc = -EPERM;
		fail(err, err_len,
		     "token file %s: mode %03o, must not be accessible to group or others (chmod 600)", path,
		     (unsigned)(st.st_mode & 0777));
	}
	size_t len = 0;
	while (rc == 0) {
		if (len == cap) {
			char extra;
			ssize_t more = read(fd, &extra, 1);
			if (more > 0) {
				rc = -EFBIG;
				fail(err, err_len, "token file %s: longer than %zu bytes", path, cap);
			}
			break;
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0) {
			rc = -errno;
			fail(err, err_len, "token file %s: %s", path, strerror(-rc));
			break;
		}
		if (n == 0) break;
		len += (size_t)n;
	}
	close(fd);
	if (rc) return rc;
	while (len > 0 && isspace(buf[len - 1]))
		len--;
	if (len < OPTS_TOKEN_BYTES_MIN)
		return fail(err, err_len, "token file %s: token shorter than %u bytes", path,
		            OPTS_TOKEN_BYTES_MIN);
	return (int)len;
}
