/* fs_opts_test.c - unit tests of fs/opts: metastored's command line and token file.
 *
 * Every accepted form (one-node defaults, a full cluster line, --opt=value, -o lists with our
 * options, passed-through FUSE options and mount(8)'s ignored ones, size suffixes, help and
 * version) and every refusal with its message; opts_parse_peers and opts_parse_bytes edge
 * cases; opts_read_token's errnos: -ENOENT, -EACCES (as another user), -EPERM (mode), -EINVAL
 * (directory, too short), -EFBIG (too long), -ELOOP (symlink).
 */
#include "opts.h"

#include "sm.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int parse(opts_t *o, char *err, const char *const *args)
{
	char *argv[64];
	int argc = 0;
	argv[argc++] = "metastored";
	for (; *args; args++)
		argv[argc++] = (char *)*args;
	argv[argc] = NULL;
	err[0] = '\0';
	return opts_parse(argc, argv, o, err, 512);
}

#define PARSE(...) parse(&o, err, (const char *const[]){__VA_ARGS__, NULL})

static void expect_refused(const char *needle, const char *const *args)
{
	opts_t o;
	char err[512];
	int rc = parse(&o, err, args);
	ck_assert_int_eq(rc, -EINVAL);
	ck_assert_msg(strstr(err, needle) != NULL, "message '%s' lacks '%s'", err, needle);
	ck_assert_msg(strncmp(err, "metastored: ", 12) == 0, "message '%s' lacks the program name", err);
}

#define REFUSED(needle, ...) expect_refused(needle, (const char *const[]){__VA_ARGS__, NULL})

START_TEST(one_node_defaults)
{
	opts_t o;
	char err[512];
	ck_assert_int_eq(PARSE("--id", "3", "--data", "/d", "/mnt"), 0);
	ck_assert_uint_eq(o.id, 3);
	ck_assert(o.single);
	ck_assert_uint_eq(o.n_peers, 1);
	ck_assert_uint_eq(o.peers[0].id, 3);
	ck_assert_str_eq(o.data_dir, "/d");
	ck_assert_str_eq(o.mountpoint, "/mnt");
	ck_assert_str_eq(o.engine, "memory");
	ck_assert_ptr_null(o.token_file);
	ck_assert_uint_eq(o.value_bytes_max, SM_VALUE_BYTES_MAX_DEFAULT);
	ck_assert(!o.foreground);
	ck_assert_int_eq(o.log_level, LOG_INFO);
	ck_assert(!o.local_reads);
	ck_assert(o.inotify);
	ck_assert(!o.allow_other);
	ck_assert_str_eq(o.fuse_opts, "");
}
END_TEST

START_TEST(full_cluster_line)
{
	opts_t o;
	char err[512];
	ck_assert_int_eq(PARSE("--id=2", "--peers", "1=127.0.0.1:7101,2=10.0.0.2:7102,3=[::1]:7103",
	                       "--data=/var/d", "--engine", "rocksdb", "--token-file", "/t", "--value-max",
	                       "64K", "-f", "--log-level", "debug", "-o",
	                       "local_reads,allow_other,inotify=off,noatime,fsname=ms,_netdev,x-systemd.foo",
	                       "/mnt/x"),
	                 0);
	ck_assert_uint_eq(o.id, 2);
	ck_assert(!o.single);
	ck_assert_uint_eq(o.n_peers, 3);
	ck_assert_str_eq(o.peers[1].host, "10.0.0.2");
	ck_assert_uint_eq(o.peers[1].port, 7102);
	ck_assert_str_eq(o.peers[2].host, "::1");
	ck_assert_str_eq(o.engine, "rocksdb");
	ck_assert_str_eq(o.token_file, "/t");
	ck_assert_uint_eq(o.value_bytes_max, 64 * 1024);
	ck_assert(o.foreground);
	ck_assert_int_eq(o.log_level, LOG_DEBUG);
	ck_assert(o.local_reads);
	ck_assert(!o.inotify);
	ck_assert(o.allow_other);
	ck_assert_str_eq(o.fuse_opts, "allow_other,noatime,fsname=ms");
	ck_assert_str_eq(o.mountpoint, "/mnt/x");
	/* -oOPTS glued, --foreground, a one-member --peers list needs no token */
	ck_assert_int_eq(
	    PARSE("--id", "1", "--peers", "1=h:1", "--data", "d", "-oro", "--foreground", "--", "-m"), 0);
	ck_assert_uint_eq(o.n_peers, 1);
	ck_assert(o.read_only);
	ck_assert_str_eq(o.mountpoint, "-m");
}
END_TEST

START_TEST(help_and_version)
{
	opts_t o;
	char err[512];
	FILE *saved = stdout;
	stdout = fopen("/dev/null", "w");
	int h = PARSE("--help");
	int v = PARSE("-V");
	fclose(stdout);
	stdout = saved;
	ck_assert_int_eq(h, 1);
	ck_assert_int_eq(v, 1);
}
END_TEST

START_TEST(refusals)
{
	REFUSED("--id is required", "--data", "d", "/m");
	REFUSED("--data is required", "--id", "1", "/m");
	REFUSED("no mount point", "--id", "1", "--data", "d");
	REFUSED("more than one mount point", "--id", "1", "--data", "d", "/m", "/n");
	REFUSED("--id '0'", "--id", "0", "--data", "d", "/m");
	REFUSED("--id '255'", "--id", "255", "--data", "d", "/m");
	REFUSED("--id 'x'", "--id", "x", "--data", "d", "/m");
	REFUSED("--id needs a value", "--data", "d", "/m", "--id");
	REFUSED("--engine 'lmdb'", "--id", "1", "--data", "d", "--engine", "lmdb", "/m");
	REFUSED("--log-level 'loud'", "--id", "1", "--data", "d", "--log-level", "loud", "/m");
	REFUSED("--value-max '9M'", "--id", "1", "--data", "d", "--value-max", "9M", "/m");
	REFUSED("--value-max '0'", "--id", "1", "--data", "d", "--value-max", "0", "/m");
	REFUSED("--value-max 'abc'", "--id", "1", "--data", "d", "--value-max", "abc", "/m");
	REFUSED("--token-file is required", "--id", "1", "--peers", "1=a:1,2=b:2", "--data", "d", "/m");
	REFUSED("--token-file: empty", "--id", "1", "--token-file", "", "--data", "d", "/m");
	REFUSED("--id 3 is not in --peers", "--id", "3", "--peers", "1=a:1,2=b:2", "--token-file", "t",
	        "--data", "d", "/m");
	REFUSED("unknown option '--bogus'", "--id", "1", "--data", "d", "--bogus", "/m");
	REFUSED("unknown option '-x'", "--id", "1", "--data", "d", "-x", "/m");
	REFUSED("-o: unknown option 'writeback'", "--id", "1", "--data", "d", "-o", "writeback", "/m");
	REFUSED("-o needs a value", "--id", "1", "--data", "d", "/m", "-o");
	REFUSED("-o inotify=maybe", "--id", "1", "--data", "d", "-o", "inotify=maybe", "/m");
	REFUSED("-o fsname: needs a value", "--id", "1", "--data", "d", "-o", "fsname", "/m");
	REFUSED("-o allow_other: takes no value", "--id", "1", "--data", "d", "-o", "allow_other=1", "/m");
	REFUSED("-o: bad option", "--id", "1", "--data", "d", "-o", "=x", "/m");
}
END_TEST

START_TEST(fuse_opts_overflow)
{
	char big[OPTS_FUSE_ARGS_BYTES + 64];
	memset(big, 0, sizeof big);
	strcpy(big, "fsname=");
	memset(big + 7, 'a', OPTS_FUSE_ARGS_BYTES);
	REFUSED("-o: options too long", "--id", "1", "--data", "d", "-o", big, "/m");
}
END_TEST

START_TEST(peers_lists)
{
	raft_peer_addr_t p[RAFT_NODE_PEERS_MAX];
	uint32_t n = 0;
	char err[256];
	ck_assert_int_eq(opts_parse_peers("7=host.example:65535", p, &n, err, sizeof err), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(p[0].id, 7);
	ck_assert_uint_eq(p[0].port, 65535);
	const char *bad[] = {"",
	                     "1=a:1,",
	                     "1=a:1,,2=b:2",
	                     "1=a",
	                     "a:1",
	                     "1=:7",
	                     "0=a:1",
	                     "255=a:1",
	                     "1=a:0",
	                     "1=a:65536",
	                     "1=a:x",
	                     "1=a:1,1=b:2",
	                     "x=a:1",
	                     "1=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1",
	                     "1=a:1,2=a:2,3=a:3,4=a:4,5=a:5,6=a:6,7=a:7,8=a:8,9=a:9,10=a:10"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		ck_assert_msg(opts_parse_peers(bad[i], p, &n, err, sizeof err) == -EINVAL, "accepted '%s'",
		              bad[i]);
		ck_assert_msg(strstr(err, "--peers") != NULL, "no message for '%s'", bad[i]);
	}
	char huge[200];
	memset(huge, '1', sizeof huge - 1);
	huge[sizeof huge - 1] = '\0';
	ck_assert_int_eq(opts_parse_peers(huge, p, &n, err, sizeof err), -EINVAL);
}
END_TEST

START_TEST(byte_sizes)
{
	uint64_t v = 0;
	ck_assert_int_eq(opts_parse_bytes("1", 100, &v), 0);
	ck_assert_uint_eq(v, 1);
	ck_assert_int_eq(opts_parse_bytes("2k", 1u << 20, &v), 0);
	ck_assert_uint_eq(v, 2048);
	ck_assert_int_eq(opts_parse_bytes("8M", 8u << 20, &v), 0);
	ck_assert_uint_eq(v, 8u << 20);
	ck_assert_int_eq(opts_parse_bytes("1KiB", 4096, &v), 0);
	ck_assert_uint_eq(v, 1024);
	ck_assert_int_eq(opts_parse_bytes("1G", UINT64_MAX, &v), 0);
	ck_assert_uint_eq(v, 1ull << 30);
	ck_assert_int_eq(opts_parse_bytes("0", 100, &v), -ERANGE);
	ck_assert_int_eq(opts_parse_bytes("101", 100, &v), -ERANGE);
	ck_assert_int_eq(opts_parse_bytes("99999999999999999999", UINT64_MAX, &v), -ERANGE);
	ck_assert_int_eq(opts_parse_bytes("17179869184G", UINT64_MAX, &v), -ERANGE);
	ck_assert_int_eq(opts_parse_bytes("", 100, &v), -EINVAL);
	ck_assert_int_eq(opts_parse_bytes("-1", 100, &v), -EINVAL);
	ck_assert_int_eq(opts_parse_bytes("1T", UINT64_MAX, &v), -EINVAL);
	ck_assert_int_eq(opts_parse_bytes("1 K", UINT64_MAX, &v), -EINVAL);
	ck_assert_int_eq(opts_parse_bytes("1B", UINT64_MAX, &v), -EINVAL);
	ck_assert_int_eq(opts_parse_bytes(NULL, 1, &v), -EINVAL);
}
END_TEST

/* ------------------------------------------------------------------ token files */

static char tmpdir[64];

static void setup_tmp(void)
{
	strcpy(tmpdir, "/tmp/fs_opts_test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	chmod(tmpdir, 0755);
}

static void teardown_tmp(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static void write_file(const char *name, const char *text, size_t len, mode_t mode, char *path)
{
	sprintf(path, "%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	ck_assert_int_eq(chmod(path, mode), 0);
}

START_TEST(token_ok_and_trimmed)
{
	char path[256], err[256];
	uint8_t buf[OPTS_TOKEN_BYTES_MAX];
	write_file("tok", "0123456789abcdef0123\n\n", 22, 0600, path);
	int n = opts_read_token(path, buf, sizeof buf, err, sizeof err);
	ck_assert_int_eq(n, 20);
	ck_assert(memcmp(buf, "0123456789abcdef0123", 20) == 0);
	write_file("tok4", "0123456789abcdef", 16, 0400, path);
	ck_assert_int_eq(opts_read_token(path, buf, sizeof buf, err, sizeof err), 16);
}
END_TEST

START_TEST(token_errors)
{
	char path[256], err[256];
	uint8_t buf[64];
	sprintf(path, "%s/missing", tmpdir);
	ck_assert_int_eq(opts_read_token(path, buf, sizeof buf, err, sizeof err), -ENOENT);
	ck_assert(strstr(err, "missing") != NULL);
	write_file("open", "0123456789abcdef", 16, 0644, path);
	ck_assert_int_eq(opts_read_token(path, buf, sizeof buf, err, sizeof err), -EPERM);
	ck_assert(strstr(err, "chmod 600") != NULL);
	write_file("short", "0123456789\n", 11, 0600, path);
	ck_assert_int_eq(opts_read_token(path, buf, sizeof buf, err, sizeof err), -EINVAL);
	ck_assert(strstr(err, "shorter") != NULL);
	char big[100];
	memset(big, 'x', sizeof big);
	write_file("long", big, sizeof big, 0600, path);
	ck_assert_int_eq(opts_read_token(path, buf, sizeof buf, err, sizeof err), -EFBIG);
	write_file("exact", big, sizeof buf, 0600, path); /* exactly cap bytes is fine */
	ck_assert_int_eq(opts_read_token(path, buf, sizeof buf, err, sizeof err), (int)sizeof buf);
	sprintf(path, "%s/dir", tmpdir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert_int_eq(opts_read_token(path, buf, sizeof buf, err, sizeof err), -EINVAL);
	ck_assert(strstr(err, "not a regular file") != NULL);
	char target[256];
	write_file("target", "0123456789abcdef", 16, 0600, target);
	sprintf(path, "%s/link", tmpdir);
	ck_assert_int_eq(symlink(target, path), 0);
	ck_assert_int_eq(opts_read_token(path, buf, sizeof buf, err, sizeof err), -ELOOP);
}
END_TEST

START_TEST(token_eacces_as_other_user)
{
	char path[256];
	write_file("rootonly", "0123456789abcdef", 16, 0600, path);
	if (geteuid() != 0) { /* the file is ours: make it unreadable to us instead */
		ck_assert_int_eq(chmod(path, 0200), 0);
		char err[256];
		uint8_t buf[64];
		ck_assert_int_eq(opts_read_token(path, buf, sizeof buf, err, sizeof err), -EACCES);
		return;
	}
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (setgid(65534) != 0 || setuid(65534) != 0) _exit(3);
		char err[256];
		uint8_t buf[64];
		_exit(opts_read_token(path, buf, sizeof buf, err, sizeof err) == -EACCES ? 0 : 1);
	}
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fs_opts");
	TCase *tc = tcase_create("parse");
	tcase_add_test(tc, one_node_defaults);
	tcase_add_test(tc, full_cluster_line);
	tcase_add_test(tc, help_and_version);
	tcase_add_test(tc, refusals);
	tcase_add_test(tc, fuse_opts_overflow);
	tcase_add_test(tc, peers_lists);
	tcase_add_test(tc, byte_sizes);
	suite_add_tcase(s, tc);
	TCase *tt = tcase_create("token");
	tcase_add_checked_fixture(tt, setup_tmp, teardown_tmp);
	tcase_add_test(tt, token_ok_and_trimmed);
	tcase_add_test(tt, token_errors);
	tcase_add_test(tt, token_eacces_as_other_user);
	suite_add_tcase(s, tt);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
