/* raft_sim_msg.c - tests of the Raft wire codec (raft/msg.c): round trips of every message type,
 * every truncation offset, trailing bytes, CRC corruption, each rule the decoder enforces, the
 * membership-entry codec, and a seeded fuzz loop (random and mutated inputs) whose invariant is that
 * decode either fails with -EINVAL or yields a message that re-encodes to the very same bytes.
 */
#include "msg.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static raft_entry_t dec[RAFT_MSG_ENTRIES_MAX];
static uint8_t conf_buf[RAFT_CONF_HEADER_BYTES + 8 * RAFT_NODES_MAX];

static raft_conf_t conf3(void)
{
	raft_conf_t c = {.n_voters = 3, .voters = {1, 2, 3}, .n_learners = 1, .learners = {4}};
	return c;
}

/* An AppendEntries with a normal, a no-op and a membership entry. */
static raft_msg_t app_msg(raft_entry_t ents[3])
{
	raft_conf_t c = conf3();
	int len = raft_conf_encode(RAFT_CONF_ADD_LEARNER, 4, &c, conf_buf, sizeof(conf_buf));
	ck_assert_int_gt(len, 0);
	ents[0] = (raft_entry_t){.index = 8, .term = 3, .type = RAFT_ENTRY_NORMAL, .len = 5, .data = "hello"};
	ents[1] = (raft_entry_t){.index = 9, .term = 4, .type = RAFT_ENTRY_NOOP};
	ents[2] = (raft_entry_t){
	    .index = 10, .term = 4, .type = RAFT_ENTRY_CONF, .len = (uint32_t)len, .data = conf_buf};
	return (raft_msg_t){.type = RAFT_MSG_APP,
	                    .from = 1,
	                    .to = 2,
	                    .term = 4,
	                    .log_term = 3,
	                    .index = 7,
	                    .commit = 6,
	                    .n_entries = 3,
	                    .entries = ents};
}

static raft_msg_t snap_msg(void)
{
	static const char chunk[] = "0123456789abcdef";
	raft_msg_t m = {.type = RAFT_MSG_SNAP,
	                .from = 1,
	                .to = 3,
	                .term = 5,
	                .offset = 16,
	                .chunk_len = 16,
	                .chunk = chunk,
	                .flags = RAFT_MSG_F_DONE};
	m.snap = (raft_snapshot_meta_t){.index = 100, .term = 4, .size_bytes = 32, .conf = conf3()};
	return m;
}

static size_t encode(const raft_msg_t *m, uint8_t **out)
{
	size_t size = raft_msg_size(m);
	*out = malloc(size);
	ck_assert_ptr_nonnull(*out);
	ck_assert_int_eq(raft_msg_encode(m, *out, size), (int)size);
	return size;
}

static void assert_same(const raft_msg_t *a, const raft_msg_t *b)
{
	ck_assert_uint_eq(a->type, b->type);
	ck_assert_uint_eq(a->flags, b->flags);
	ck_assert_uint_eq(a->from, b->from);
	ck_assert_uint_eq(a->to, b->to);
	ck_assert_uint_eq(a->term, b->term);
	ck_assert_uint_eq(a->log_term, b->log_term);
	ck_assert_uint_eq(a->index, b->index);
	ck_assert_uint_eq(a->commit, b->commit);
	ck_assert_uint_eq(a->hint, b->hint);
	ck_assert_uint_eq(a->ctx, b->ctx);
	ck_assert_uint_eq(a->offset, b->offset);
	ck_assert_uint_eq(a->n_entries, b->n_entries);
	for (uint32_t i = 0; i < a->n_entries; i++) {
		ck_assert_uint_eq(a->entries[i].index, b->entries[i].index);
		ck_assert_uint_eq(a->entries[i].term, b->entries[i].term);
		ck_assert_uint_eq(a->entries[i].type, b->entries[i].type);
		ck_assert_uint_eq(a->entries[i].len, b->entries[i].len);
		if (a->entries[i].len)
			ck_assert_mem_eq(a->entries[i].data, b->entries[i].data, a->entries[i].len);
	}
	if (a->type == RAFT_MSG_SNAP) {
		ck_assert_uint_eq(a->snap.index, b->snap.index);
		ck_assert_uint_eq(a->snap.term, b->snap.term);
		ck_assert_uint_eq(a->snap.size_bytes, b->snap.size_bytes);
		ck_assert(raft_conf_equal(&a->snap.conf, &b->snap.conf));
		ck_assert_uint_eq(a->chunk_len, b->chunk_len);
		if (a->chunk_len) /* an empty chunk may be NULL: memcmp(NULL, ...) is undefined */
			ck_assert_mem_eq(a->chunk, b->chunk, a->chunk_len);
	}
}

static void roundtrip(const raft_msg_t *m)
{
	uint8_t *buf;
	size_t size = encode(m, &buf);
	raft_msg_t out;
	ck_assert_int_eq(raft_msg_decode(buf, size, &out, dec, RAFT_MSG_ENTRIES_MAX), 0);
	assert_same(m, &out);
	free(buf);
}

START_TEST(roundtrip_every_type)
{
	raft_entry_t ents[3];
	raft_msg_t app = app_msg(ents);
	roundtrip(&app);
	raft_msg_t snap = snap_msg();
	roundtrip(&snap);
	for (uint8_t t = RAFT_MSG_APP; t <= RAFT_MSG_TYPE_MAX; t++) {
		if (t == RAFT_MSG_SNAP) continue;
		raft_msg_t m = {.type = t,
		                .from = 7,
		                .to = 9,
		                .term = UINT64_MAX,
		                .log_term = 0x0102030405060708ull,
		                .index = 1ull << 63,
		                .commit = 42,
		                .hint = 17,
		                .ctx = 0xdeadbeef,
		                .offset = 3,
		                .flags = RAFT_MSG_F_REJECT | RAFT_MSG_F_TRANSFER};
		if (t == RAFT_MSG_APP) m.log_term = 5; /* prev term must not exceed the message term */
		roundtrip(&m);
		ck_assert_str_ne(raft_msg_type_name(t), "?");
	}
	ck_assert_str_eq(raft_msg_type_name(0), "?");
	ck_assert_str_eq(raft_msg_type_name(200), "?");
	/* an empty snapshot is one empty chunk */
	raft_msg_t empty = snap_msg();
	empty.snap.size_bytes = 0;
	empty.offset = 0;
	empty.chunk_len = 0;
	empty.chunk = NULL;
	roundtrip(&empty);
}
END_TEST

static void every_prefix_fails(const raft_msg_t *m)
{
	uint8_t *buf;
	size_t size = encode(m, &buf);
	for (size_t len = 0; len < size; len++) {
		/* a fresh copy of exactly len bytes, so ASan sees any read past it */
		uint8_t *p = malloc(len ? len : 1);
		memcpy(p, buf, len);
		raft_msg_t out;
		ck_assert_int_eq(raft_msg_decode(p, len, &out, dec, RAFT_MSG_ENTRIES_MAX), -EINVAL);
		free(p);
	}
	uint8_t *longer = malloc(size + 1);
	memcpy(longer, buf, size);
	longer[size] = 0;
	raft_msg_t out;
	ck_assert_int_eq(raft_msg_decode(longer, size + 1, &out, dec, RAFT_MSG_ENTRIES_MAX), -EINVAL);
	free(longer);
	free(buf);
}

START_TEST(every_truncation_offset_fails)
{
	raft_entry_t ents[3];
	raft_msg_t app = app_msg(ents);
	every_prefix_fails(&app);
	raft_msg_t snap = snap_msg();
	every_prefix_fails(&snap);
	raft_msg_t hb = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 3, .commit = 4, .ctx = 5};
	every_prefix_fails(&hb);
	raft_msg_t out;
	ck_assert_int_eq(raft_msg_decode(NULL, 0, &out, dec, RAFT_MSG_ENTRIES_MAX), -EINVAL);
}
END_TEST

START_TEST(crc_catches_corruption)
{
	raft_entry_t ents[3];
	raft_msg_t app = app_msg(ents);
	uint8_t *buf;
	size_t size = encode(&app, &buf);
	/* every byte of entry data and of each entry's CRC field */
	size_t data0 = RAFT_MSG_HEADER_BYTES + RAFT_MSG_ENTRY_HEADER_BYTES;
	for (size_t i = 0; i < 5; i++) {
		buf[data0 + i] ^= 0x20;
		raft_msg_t out;
		ck_assert_int_eq(raft_msg_decode(buf, size, &out, dec, RAFT_MSG_ENTRIES_MAX), -EINVAL);
		buf[data0 + i] ^= 0x20;
	}
	buf[RAFT_MSG_HEADER_BYTES + 24] ^= 1;
	raft_msg_t out;
	ck_assert_int_eq(raft_msg_decode(buf, size, &out, dec, RAFT_MSG_ENTRIES_MAX), -EINVAL);
	free(buf);
	raft_msg_t snap = snap_msg();
	size = encode(&snap, &buf);
	buf[size - 1] ^= 0xff; /* last chunk byte */
	ck_assert_int_eq(raft_msg_decode(buf, size, &out, dec, RAFT_MSG_ENTRIES_MAX), -EINVAL);
	free(buf);
}
END_TEST

/* Encodes a valid message, patches one byte, expects -EINVAL. */
static void patched_fails(const raft_msg_t *m, size_t at, uint8_t value)
{
	uint8_t *buf;
	size_t size = encode(m, &buf);
	ck_assert_uint_lt(at, size);
	buf[at] = value;
	raft_msg_t out;
	ck_assert_int_eq(raft_msg_decode(buf, size, &out, dec, RAFT_MSG_ENTRIES_MAX), -EINVAL);
	free(buf);
}

static void invalid_encode(raft_msg_t m)
{
	uint8_t buf[4096];
	ck_assert_int_eq(raft_msg_check(&m, false), -EINVAL);
	ck_assert_int_eq(raft_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
}

START_TEST(decoder_rules)
{
	raft_msg_t hb = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 3};
	patched_fails(&hb, 0, 2); /* version */
	patched_fails(&hb, 1, 0); /* type 0 */
	patched_fails(&hb, 1, RAFT_MSG_TYPE_MAX + 1);
	patched_fails(&hb, 2, 0x80); /* unknown flag */
	patched_fails(&hb, 3, 1);    /* reserved */
	patched_fails(&hb, 8, 0);    /* from 0 */
	patched_fails(&hb, 16, 0);   /* to 0 */
	patched_fails(&hb, 16, 1);   /* to == from */
	patched_fails(&hb, 4, 1);    /* an entry count the input does not hold */
	patched_fails(&hb, 7, 0x40); /* count over the cap */

	raft_entry_t ents[3];
	raft_msg_t app = app_msg(ents);
	size_t e0 = RAFT_MSG_HEADER_BYTES;
	patched_fails(&app, e0, 9);                 /* entry index not prev + 1 */
	patched_fails(&app, e0 + 8, 9);             /* entry term above the message term */
	patched_fails(&app, e0 + 8, 2);             /* entry term below prev term */
	patched_fails(&app, e0 + 16, 7);            /* entry type */
	patched_fails(&app, e0 + 17, 1);            /* entry padding */
	patched_fails(&app, e0 + 28, 1);            /* entry reserved word */
	patched_fails(&app, e0 + 23, 0x7f);         /* entry length over the cap */
	patched_fails(&app, 1, RAFT_MSG_HEARTBEAT); /* entries on a message that carries none */
	patched_fails(&app, 32, 5);                 /* prev term above the message term */

	raft_msg_t snap = snap_msg();
	size_t s0 = RAFT_MSG_HEADER_BYTES;
	patched_fails(&snap, s0, 0);       /* snapshot index 0 (with the rest of the u64 zero) */
	patched_fails(&snap, 72, 17);      /* offset + chunk beyond size */
	patched_fails(&snap, 2, 0);        /* last chunk without DONE */
	patched_fails(&snap, s0 + 24, 17); /* voter count over the cap */
	patched_fails(&snap, s0 + 40, 1);  /* duplicate voter id (2 -> 1) */

	/* the encoder refuses what the decoder would */
	invalid_encode((raft_msg_t){.type = RAFT_MSG_HEARTBEAT, .from = 0, .to = 2});
	invalid_encode((raft_msg_t){.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 2});
	invalid_encode((raft_msg_t){.type = 0, .from = 1, .to = 2});
	invalid_encode((raft_msg_t){.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .flags = 0x40});
	invalid_encode((raft_msg_t){.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .chunk_len = 1});
	raft_entry_t bad = {.index = 1, .term = 1, .type = RAFT_ENTRY_NOOP, .len = 1, .data = "x"};
	invalid_encode((raft_msg_t){
	    .type = RAFT_MSG_APP, .from = 1, .to = 2, .term = 1, .n_entries = 1, .entries = &bad});
	bad = (raft_entry_t){.index = 1, .term = 1, .type = RAFT_ENTRY_CONF, .len = 3, .data = "abc"};
	invalid_encode((raft_msg_t){
	    .type = RAFT_MSG_APP, .from = 1, .to = 2, .term = 1, .n_entries = 1, .entries = &bad});
	bad = (raft_entry_t){.index = 1, .term = 0, .type = RAFT_ENTRY_NORMAL};
	invalid_encode((raft_msg_t){
	    .type = RAFT_MSG_APP, .from = 1, .to = 2, .term = 1, .n_entries = 1, .entries = &bad});
	bad = (raft_entry_t){.index = 1, .term = 1, .type = RAFT_ENTRY_NORMAL, .len = 4, .data = NULL};
	invalid_encode((raft_msg_t){
	    .type = RAFT_MSG_APP, .from = 1, .to = 2, .term = 1, .n_entries = 1, .entries = &bad});
	invalid_encode((raft_msg_t){.type = RAFT_MSG_APP, .from = 1, .to = 2, .term = 1, .n_entries = 1});
	raft_msg_t s = snap_msg();
	s.chunk = NULL;
	invalid_encode(s);
	ck_assert_int_eq(raft_msg_check(&s, true), 0); /* as the core hands it out in a Ready */
	s = snap_msg();
	s.snap.term = 6; /* snapshot term above the message term */
	invalid_encode(s);
	s = snap_msg();
	s.snap.conf.n_voters = 0;
	invalid_encode(s);
	s = snap_msg();
	s.chunk_len = RAFT_SNAP_CHUNK_BYTES_MAX + 1;
	s.snap.size_bytes = s.offset + s.chunk_len;
	invalid_encode(s);
}
END_TEST

START_TEST(buffer_errors)
{
	raft_entry_t ents[3];
	raft_msg_t app = app_msg(ents);
	uint8_t *buf;
	size_t size = encode(&app, &buf);
	raft_msg_t out;
	ck_assert_int_eq(raft_msg_decode(buf, size, &out, dec, 2), -ENOBUFS);
	ck_assert_int_eq(raft_msg_decode(buf, size, &out, dec, 3), 0);
	uint8_t small[64];
	ck_assert_int_eq(raft_msg_encode(&app, small, sizeof(small)), -EMSGSIZE);
	ck_assert_int_eq(raft_msg_encode(&app, buf, size - 1), -EMSGSIZE);
	free(buf);
}
END_TEST

START_TEST(conf_codec)
{
	raft_conf_t c = conf3(), out;
	raft_conf_op_t op;
	uint64_t id;
	int len = raft_conf_encode(RAFT_CONF_ADD_LEARNER, 4, &c, conf_buf, sizeof(conf_buf));
	ck_assert_int_eq(len, (int)raft_conf_entry_size(&c));
	ck_assert_int_eq(raft_conf_decode(conf_buf, (size_t)len, &op, &id, &out), 0);
	ck_assert_int_eq(op, RAFT_CONF_ADD_LEARNER);
	ck_assert_uint_eq(id, 4);
	ck_assert(raft_conf_equal(&c, &out));
	for (int k = 0; k < len; k++)
		ck_assert_int_eq(raft_conf_decode(conf_buf, (size_t)k, &op, &id, &out), -EINVAL);
	ck_assert_int_eq(raft_conf_encode(RAFT_CONF_ADD_LEARNER, 4, &c, conf_buf, (size_t)len - 1),
	                 -EMSGSIZE);
	/* the change must show in the result; ids valid; a voter left */
	ck_assert_int_eq(raft_conf_encode(RAFT_CONF_ADD_VOTER, 4, &c, conf_buf, sizeof(conf_buf)), -EINVAL);
	ck_assert_int_eq(raft_conf_encode(RAFT_CONF_REMOVE, 3, &c, conf_buf, sizeof(conf_buf)), -EINVAL);
	ck_assert_int_eq(raft_conf_encode(RAFT_CONF_REMOVE, 0, &c, conf_buf, sizeof(conf_buf)), -EINVAL);
	ck_assert_int_eq(raft_conf_encode((raft_conf_op_t)9, 4, &c, conf_buf, sizeof(conf_buf)), -EINVAL);
	ck_assert_int_eq(raft_conf_encode(RAFT_CONF_REMOVE, 9, &c, conf_buf, sizeof(conf_buf)),
	                 (int)raft_conf_entry_size(&c));
	raft_conf_t none = {.n_learners = 1, .learners = {4}};
	ck_assert_int_eq(raft_conf_encode(RAFT_CONF_ADD_LEARNER, 4, &none, conf_buf, sizeof(conf_buf)),
	                 -EINVAL);
	raft_conf_t dup = {.n_voters = 2, .voters = {1, 1}};
	ck_assert_int_eq(raft_conf_check(&dup), -EINVAL);
	raft_conf_t both = {.n_voters = 1, .voters = {1}, .n_learners = 1, .learners = {1}};
	ck_assert_int_eq(raft_conf_check(&both), -EINVAL);
	raft_conf_t zero = {.n_voters = 1, .voters = {0}};
	ck_assert_int_eq(raft_conf_check(&zero), -EINVAL);
	raft_conf_t big = {.n_voters = RAFT_NODES_MAX, .n_learners = 1};
	ck_assert_int_eq(raft_conf_check(&big), -EINVAL);
	raft_conf_t empty = {0};
	ck_assert_int_eq(raft_conf_check(&empty), 0); /* a node waiting to be added */
	/* decode-side checks: version, padding, op */
	len = raft_conf_encode(RAFT_CONF_ADD_LEARNER, 4, &c, conf_buf, sizeof(conf_buf));
	for (int at = 0; at < 4; at++) {
		uint8_t save = conf_buf[at];
		conf_buf[at] =
		    at == 1 ? 2 : (uint8_t)(save + 1); /* op 2 (ADD_VOTER) contradicts the result */
		ck_assert_int_eq(raft_conf_decode(conf_buf, (size_t)len, &op, &id, &out), -EINVAL);
		conf_buf[at] = save;
	}
	ck_assert_int_eq(raft_conf_decode(NULL, 0, &op, &id, &out), -EINVAL);
}
END_TEST

static uint64_t fuzz_rng;
static uint64_t fuzz_next(void)
{
	uint64_t z = (fuzz_rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* decode either refuses, or what it accepted re-encodes to the same bytes (one encoding per message) */
static void fuzz_one(const uint8_t *buf, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	memcpy(p, buf, len);
	raft_msg_t m;
	int rc = raft_msg_decode(p, len, &m, dec, RAFT_MSG_ENTRIES_MAX);
	if (rc == 0) {
		ck_assert_uint_eq(raft_msg_size(&m), len);
		uint8_t *q = malloc(len);
		ck_assert_int_eq(raft_msg_encode(&m, q, len), (int)len);
		ck_assert_mem_eq(p, q, len);
		free(q);
	} else {
		ck_assert_int_eq(rc, -EINVAL);
	}
	free(p);
}

START_TEST(fuzz_decoder)
{
	fuzz_rng = 77;
	uint8_t buf[512];
	for (int i = 0; i < 20000; i++) {
		size_t len = (size_t)(fuzz_next() % sizeof(buf));
		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)fuzz_next();
		if (len > 0) buf[0] = RAFT_WIRE_VERSION; /* get past the first gate most of the time */
		fuzz_one(buf, len);
	}
	raft_entry_t ents[3];
	raft_msg_t seeds[] = {
	    app_msg(ents),
	    snap_msg(),
	    {.type = RAFT_MSG_VOTE, .from = 1, .to = 2, .term = 3, .index = 4, .log_term = 2}};
	for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
		uint8_t *enc;
		size_t size = encode(&seeds[s], &enc);
		for (int i = 0; i < 20000; i++) {
			memcpy(buf, enc, size);
			int flips = 1 + (int)(fuzz_next() % 3);
			for (int f = 0; f < flips; f++)
				buf[fuzz_next() % size] ^= (uint8_t)(1u << (fuzz_next() % 8));
			size_t len = fuzz_next() % 8 == 0 ? (size_t)(fuzz_next() % (size + 1)) : size;
			fuzz_one(buf, len);
		}
		free(enc);
	}
}
END_TEST

static Suite *msg_suite(void)
{
	Suite *s = suite_create("raft_msg");
	TCase *tc = tcase_create("codec");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, roundtrip_every_type);
	tcase_add_test(tc, every_truncation_offset_fails);
	tcase_add_test(tc, crc_catches_corruption);
	tcase_add_test(tc, decoder_rules);
	tcase_add_test(tc, buffer_errors);
	tcase_add_test(tc, conf_codec);
	tcase_add_test(tc, fuzz_decoder);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(msg_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
