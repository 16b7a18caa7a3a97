/* msg.c - wire codec of Raft messages and membership entries (the layout is in msg.h).
 *
 * One validation function, raft_msg_check(), is used by the encoder (so we never emit what a peer
 * would refuse), by the decoder after parsing (so the core only ever sees well-formed messages) and
 * by the core's step function. The decoder walks the input with a cursor that refuses to move past
 * the end, so every truncation of a valid message fails cleanly with -EINVAL.
 */
#include "msg.h"
#include "le.h"

#include "crc32c.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#define SNAP_FIXED_BYTES 32u /* index, term, size_bytes, n_voters, n_learners */
#define CHUNK_HEADER_BYTES 8u

_Static_assert((uint64_t)RAFT_MSG_HEADER_BYTES +
                       (uint64_t)RAFT_MSG_ENTRIES_MAX * RAFT_MSG_ENTRY_HEADER_BYTES +
                       2ull * RAFT_ENTRY_BYTES_MAX <
                   RAFT_MSG_BYTES_MAX,
               "an AppendEntries the core builds (msg_bytes_max + one entry) fits the message cap");
_Static_assert(RAFT_MSG_BYTES_MAX <= INT32_MAX, "encode returns the size as int");

const char *raft_msg_type_name(uint8_t type)
{
	static const char *const names[] = {
	    "?",         "APP",         "APP_RESP",   "HEARTBEAT",       "HEARTBEAT_RESP",
	    "VOTE",      "VOTE_RESP",   "PREVOTE",    "PREVOTE_RESP",    "SNAP",
	    "SNAP_RESP", "TIMEOUT_NOW", "READ_INDEX", "READ_INDEX_RESP",
	};
	_Static_assert(sizeof(names) / sizeof(names[0]) == RAFT_MSG_TYPE_MAX + 1, "one name per type");
	return type <= RAFT_MSG_TYPE_MAX ? names[type] : "?";
}

/* ------------------------------------------------------------------ little-endian helpers */

/* A read cursor that never moves past the end: take() returns NULL instead. */
typedef struct cursor {
	const uint8_t *p;
	size_t left;
} cursor_t;

static const uint8_t *take(cursor_t *c, size_t n)
{
	if (n > c->left) return NULL;
	const uint8_t *p = c->p;
	c->p += n;
	c->left -= n;
	return p;
}

/* ------------------------------------------------------------------ membership */

static bool ids_contain(const uint64_t *ids, uint32_t n, uint64_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (ids[i] == id) return true;
	return false;
}

bool raft_conf_is_voter(const raft_conf_t *c, uint64_t id)
{
	assert(c->n_voters <= RAFT_NODES_MAX);
	return id != 0 && ids_contain(c->voters, c->n_voters, id);
}

bool raft_conf_is_learner(const raft_conf_t *c, uint64_t id)
{
	assert(c->n_learners <= RAFT_NODES_MAX);
	return id != 0 && ids_contain(c->learners, c->n_learners, id);
}

bool raft_conf_equal(const raft_conf_t *a, const raft_conf_t *b)
{
	if (a->n_voters != b->n_voters || a->n_learners != b->n_learners) return false;
	for (uint32_t i = 0; i < a->n_voters; i++)
		if (!raft_conf_is_voter(b, a->voters[i])) return false;
	for (uint32_t i = 0; i < a->n_learners; i++)
		if (!raft_conf_is_learner(b, a->learners[i])) return false;
	return true;
}

int raft_conf_check(const raft_conf_t *c)
{
	if (c->n_voters > RAFT_NODES_MAX || c->n_learners > RAFT_NODES_MAX ||
	    c->n_voters + c->n_learners > RAFT_NODES_MAX)
		return -EINVAL;
	for (uint32_t i = 0; i < c->n_voters; i++) {
		if (c->voters[i] == 0 || ids_contain(c->voters, i, c->voters[i])) return -EINVAL;
	}
	for (uint32_t i = 0; i < c->n_learners; i++) {
		uint64_t id = c->learners[i];
		if (id == 0 || ids_contain(c->learners, i, id) || ids_contain(c->voters, c->n_voters, id))
			return -EINVAL;
	}
	return 0;
}

size_t raft_conf_entry_size(const raft_conf_t *c)
{
	assert(raft_conf_check(c) == 0);
	return RAFT_CONF_HEADER_BYTES + 8u * (c->n_voters + c->n_learners);
}

/* The change must be visible in the resulting configuration; at least one voter remains. */
static int conf_change_check(raft_conf_op_t op, uint64_t id, const raft_conf_t *c)
{
	if (id == 0 || raft_conf_check(c) != 0 || c->n_voters == 0) return -EINVAL;
	switch (op) {
	case RAFT_CONF_ADD_LEARNER:
		return raft_conf_is_learner(c, id) ? 0 : -EINVAL;
	case RAFT_CONF_ADD_VOTER:
		return raft_conf_is_voter(c, id) ? 0 : -EINVAL;
	case RAFT_CONF_REMOVE:
		return raft_conf_is_voter(c, id) || raft_conf_is_learner(c, id) ? -EINVAL : 0;
	}
	return -EINVAL;
}

int raft_conf_encode(raft_conf_op_t op, uint64_t id, const raft_conf_t *c, void *buf, size_t cap)
{
	if (conf_change_check(op, id, c) != 0) return -EINVAL;
	size_t size = raft_conf_entry_size(c);
	if (cap < size) return -EMSGSIZE;
	uint8_t *p = buf;
	memset(p, 0, RAFT_CONF_HEADER_BYTES);
	p[0] = 1;
	p[1] = (uint8_t)op;
	put_le32(p + 4, c->n_voters);
	put_le64(p + 8, id);
	put_le32(p + 16, c->n_learners);
	p += RAFT_CONF_HEADER_BYTES;
	for (uint32_t i = 0; i < c->n_voters; i++, p += 8)
		put_le64(p, c->voters[i]);
	for (uint32_t i = 0; i < c->n_learners; i++, p += 8)
		put_le64(p, c->learners[i]);
	assert((size_t)(p - (uint8_t *)buf) == size);
	return (int)size;
}

int raft_conf_decode(const void *buf, size_t len, raft_conf_op_t *op, uint64_t *id, raft_conf_t *c)
{
	if (buf == NULL || len < RAFT_CONF_HEADER_BYTES) return -EINVAL;
	const uint8_t *p = buf;
	if (p[0] != 1 || p[2] != 0 || p[3] != 0 || get_le32(p + 20) != 0) return -EINVAL;
	uint32_t nv = get_le32(p + 4), nl = get_le32(p + 16);
	if (nv > RAFT_NODES_MAX || nl > RAFT_NODES_MAX || nv + nl > RAFT_NODES_MAX) return -EINVAL;
	if (len != RAFT_CONF_HEADER_BYTES + 8u * (nv + nl)) return -EINVAL;
	raft_conf_t out = {.n_voters = nv, .n_learners = nl};
	const uint8_t *ids = p + RAFT_CONF_HEADER_BYTES;
	for (uint32_t i = 0; i < nv; i++)
		out.voters[i] = get_le64(ids + 8u * i);
	for (uint32_t i = 0; i < nl; i++)
		out.learners[i] = get_le64(ids + 8u * (nv + i));
	raft_conf_op_t o = (raft_conf_op_t)p[1];
	uint64_t who = get_le64(p + 8);
	if (conf_change_check(o, who, &out) != 0) return -EINVAL;
	if (op != NULL) *op = o;
	if (id != NULL) *id = who;
	if (c != NULL) *c = out;
	return 0;
}

/* ------------------------------------------------------------------ message validation */

int raft_entry_check(const raft_entry_t *e)
{
	if (e->term == 0 || e->len > RAFT_ENTRY_BYTES_MAX) return -EINVAL;
	if (e->len > 0 && e->data == NULL) return -EINVAL;
	switch (e->type) {
	case RAFT_ENTRY_NORMAL:
		return 0;
	case RAFT_ENTRY_NOOP:
		return e->len == 0 ? 0 : -EINVAL;
	case RAFT_ENTRY_CONF:
		return raft_conf_decode(e->data, e->len, NULL, NULL, NULL);
	}
	return -EINVAL;
}

int raft_msg_check(const raft_msg_t *m, bool allow_null_chunk)
{
	if (m->type < RAFT_MSG_APP || m->type > RAFT_MSG_TYPE_MAX) return -EINVAL;
	if ((m->flags & ~RAFT_MSG_F_ALL) != 0) return -EINVAL;
	if (m->from == 0 || m->to == 0 || m->from == m->to) return -EINVAL;
	if (m->n_entries > RAFT_MSG_ENTRIES_MAX) return -EINVAL;
	if (m->n_entries > 0) {
		if (m->type != RAFT_MSG_APP || m->entries == NULL) return -EINVAL;
		if (m->index > UINT64_MAX - m->n_entries) return -EINVAL;
	}
	if (m->type == RAFT_MSG_APP && m->log_term > m->term) return -EINVAL;
	uint64_t prev_term = m->log_term;
	for (uint32_t k = 0; k < m->n_entries; k++) {
		const raft_entry_t *e = &m->entries[k];
		if (e->index != m->index + 1 + k || e->term < prev_term || e->term > m->term) return -EINVAL;
		if (raft_entry_check(e) != 0) return -EINVAL;
		prev_term = e->term;
	}
	if (m->type != RAFT_MSG_SNAP) return m->chunk_len == 0 ? 0 : -EINVAL;
	const raft_snapshot_meta_t *s = &m->snap;
	if (s->index == 0 || s->term == 0 || s->term > m->term) return -EINVAL;
	if (raft_conf_check(&s->conf) != 0 || s->conf.n_voters == 0) return -EINVAL;
	if (m->chunk_len > RAFT_SNAP_CHUNK_BYTES_MAX) return -EINVAL;
	if (m->offset > s->size_bytes || m->chunk_len > s->size_bytes - m->offset) return -EINVAL;
	bool last = m->offset + m->chunk_len == s->size_bytes;
	if (last != ((m->flags & RAFT_MSG_F_DONE) != 0)) return -EINVAL;
	if (m->chunk_len > 0 && m->chunk == NULL && !allow_null_chunk) return -EINVAL;
	return 0;
}

/* ------------------------------------------------------------------ encode */

size_t raft_msg_size(const raft_msg_t *m)
{
	size_t size = RAFT_MSG_HEADER_BYTES;
	for (uint32_t k = 0; k < m->n_entries; k++)
		size += RAFT_MSG_ENTRY_HEADER_BYTES + m->entries[k].len;
	if (m->type == RAFT_MSG_SNAP)
		size += SNAP_FIXED_BYTES + 8u * (m->snap.conf.n_voters + m->snap.conf.n_learners) +
		        CHUNK_HEADER_BYTES + m->chunk_len;
	return size;
}

int raft_msg_encode(const raft_msg_t *m, void *buf, size_t cap)
{
	if (raft_msg_check(m, false) != 0) return -EINVAL;
	size_t size = raft_msg_size(m);
	if (size > RAFT_MSG_BYTES_MAX || size > cap) return -EMSGSIZE;
	uint8_t *p = buf;
	memset(p, 0, RAFT_MSG_HEADER_BYTES);
	p[0] = RAFT_WIRE_VERSION;
	p[1] = m->type;
	p[2] = m->flags;
	put_le32(p + 4, m->n_entries);
	const uint64_t fields[] = {m->from,   m->to,   m->term, m->log_term, m->index,
	                           m->commit, m->hint, m->ctx,  m->offset};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		put_le64(p + 8 + 8 * i, fields[i]);
	p += RAFT_MSG_HEADER_BYTES;
	for (uint32_t k = 0; k < m->n_entries; k++) {
		const raft_entry_t *e = &m->entries[k];
		memset(p, 0, RAFT_MSG_ENTRY_HEADER_BYTES);
		put_le64(p, e->index);
		put_le64(p + 8, e->term);
		p[16] = e->type;
		put_le32(p + 20, e->len);
		put_le32(p + 24, crc32c(0, e->data, e->len));
		p += RAFT_MSG_ENTRY_HEADER_BYTES;
		if (e->len > 0) memcpy(p, e->data, e->len);
		p += e->len;
	}
	if (m->type == RAFT_MSG_SNAP) {
		const raft_snapshot_meta_t *s = &m->snap;
		put_le64(p, s->index);
		put_le64(p + 8, s->term);
		put_le64(p + 16, s->size_bytes);
		put_le32(p + 24, s->conf.n_voters);
		put_le32(p + 28, s->conf.n_learners);
		p += SNAP_FIXED_BYTES;
		for (uint32_t i = 0; i < s->conf.n_voters; i++, p += 8)
			put_le64(p, s->conf.voters[i]);
		for (uint32_t i = 0; i < s->conf.n_learners; i++, p += 8)
			put_le64(p, s->conf.learners[i]);
		put_le32(p, m->chunk_len);
		put_le32(p + 4, crc32c(0, m->chunk, m->chunk_len));
		p += CHUNK_HEADER_BYTES;
		if (m->chunk_len > 0) memcpy(p, m->chunk, m->chunk_len);
		p += m->chunk_len;
	}
	assert((size_t)(p - (uint8_t *)buf) == size);
	return (int)size;
}

/* ------------------------------------------------------------------ decode */

static int decode_entry(cursor_t *c, raft_entry_t *e)
{
	const uint8_t *h = take(c, RAFT_MSG_ENTRY_HEADER_BYTES);
	if (h == NULL) return -EINVAL;
	if (h[17] != 0 || h[18] != 0 || h[19] != 0 || get_le32(h + 28) != 0) return -EINVAL;
	e->index = get_le64(h);
	e->term = get_le64(h + 8);
	e->type = h[16];
	e->len = get_le32(h + 20);
	if (e->len > RAFT_ENTRY_BYTES_MAX) return -EINVAL;
	const uint8_t *data = take(c, e->len);
	if (data == NULL) return -EINVAL;
	e->data = e->len > 0 ? data : NULL;
	if (crc32c(0, data, e->len) != get_le32(h + 24)) return -EINVAL;
	return 0;
}

static int decode_snap(cursor_t *c, raft_msg_t *m)
{
	const uint8_t *h = take(c, SNAP_FIXED_BYTES);
	if (h == NULL) return -EINVAL;
	raft_snapshot_meta_t *s = &m->snap;
	s->index = get_le64(h);
	s->term = get_le64(h + 8);
	s->size_bytes = get_le64(h + 16);
	uint32_t nv = get_le32(h + 24), nl = get_le32(h + 28);
	if (nv > RAFT_NODES_MAX || nl > RAFT_NODES_MAX || nv + nl > RAFT_NODES_MAX) return -EINVAL;
	const uint8_t *ids = take(c, 8u * (nv + nl));
	if (ids == NULL) return -EINVAL;
	s->conf.n_voters = nv;
	s->conf.n_learners = nl;
	for (uint32_t i = 0; i < nv; i++)
		s->conf.voters[i] = get_le64(ids + 8u * i);
	for (uint32_t i = 0; i < nl; i++)
		s->conf.learners[i] = get_le64(ids + 8u * (nv + i));
	const uint8_t *ch = take(c, CHUNK_HEADER_BYTES);
	if (ch == NULL) return -EINVAL;
	m->chunk_len = get_le32(ch);
	if (m->chunk_len > RAFT_SNAP_CHUNK_BYTES_MAX) return -EINVAL;
	const uint8_t *chunk = take(c, m->chunk_len);
	if (chunk == NULL) return -EINVAL;
	m->chunk = m->chunk_len > 0 ? chunk : NULL;
	if (crc32c(0, chunk, m->chunk_len) != get_le32(ch + 4)) return -EINVAL;
	return 0;
}

int raft_msg_decode(const void *buf, size_t len, raft_msg_t *m, raft_entry_t *entries, size_t entries_cap)
{
	assert(m != NULL);
	memset(m, 0, sizeof(*m));
	if (buf == NULL || len > RAFT_MSG_BYTES_MAX) return -EINVAL;
	cursor_t c = {.p = buf, .left = len};
	const uint8_t *h = take(&c, RAFT_MSG_HEADER_BYTES);
	if (h == NULL || h[0] != RAFT_WIRE_VERSION || h[3] != 0) return -EINVAL;
	m->type = h[1];
	m->flags = h[2];
	m->n_entries = get_le32(h + 4);
	uint64_t *fields[] = {&m->from,   &m->to,   &m->term, &m->log_term, &m->index,
	                      &m->commit, &m->hint, &m->ctx,  &m->offset};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		*fields[i] = get_le64(h + 8 + 8 * i);
	if (m->type < RAFT_MSG_APP || m->type > RAFT_MSG_TYPE_MAX || m->n_entries > RAFT_MSG_ENTRIES_MAX)
		return -EINVAL;
	/* Each entry costs at least its header: refuse counts the input cannot hold before asking for room.
	 */
	if ((size_t)m->n_entries * RAFT_MSG_ENTRY_HEADER_BYTES > c.left) return -EINVAL;
	if (m->n_entries > entries_cap) return -ENOBUFS;
	for (uint32_t k = 0; k < m->n_entries; k++) {
		int rc = decode_entry(&c, &entries[k]);
		if (rc != 0) return rc;
	}
	m->entries = m->n_entries > 0 ? entries : NULL;
	if (m->type == RAFT_MSG_SNAP) {
		int rc = decode_snap(&c, m);
		if (rc != 0) return rc;
	}
	if (c.left != 0) return -EINVAL;
	return raft_msg_check(m, false);
}
