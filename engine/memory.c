/* memory.c - the in-memory storage backend: a B+tree of malloc'd key/value blobs.
 *
 * Every entry is one malloc'd blob (u32 key_len | u32 val_len | key | value), so engine_get()
 * hands out a pointer into it. Leaves hold up to NODE_KEYS_MAX blob pointers and are chained
 * left to right for iteration; inner nodes hold copied, shortened separator keys (the shortest
 * prefix of the right side's first key that still sorts above the left side's last key) and
 * one more child than separators. A key equal to a separator lives in the right subtree.
 *
 * Comparisons avoid a cache miss per probe: every node keeps the common prefix of the keys it
 * holds (up to PREFIX_BYTES_MAX bytes, inline) and, per slot, the next 8 key bytes after that
 * prefix as a big-endian integer (the "head"). A search compares the key against the prefix
 * once, then binary-searches the heads, and only dereferences a blob when two heads are equal.
 * A descent prefetches each child's header and heads (9 cache lines) before searching it, so
 * they arrive in parallel rather than one miss per probe. The prefix is a common prefix of the keys currently in the node, not necessarily the
 * longest: adding a key may shorten it (heads are shifted, no blob is read), splits and merges
 * recompute it from the node's first and last key.
 *
 * Writes are atomic. A single insert counts and allocates every node and separator a split
 * will need before it changes anything. A batch of several ops is sorted by key and reduced
 * to the last op per key (ops apply in order, so that is the batch's effect), all value blobs
 * are allocated, then puts are applied one by one (undone in reverse on -ENOMEM), and deletes
 * last, as removal never allocates (a rebalance that would need a new separator is skipped
 * when memory is short; the tree stays correct, only less full).
 *
 * Iterators: the engine keeps a list of its live iterators. Before any write, each positioned
 * iterator copies its current key into its own buffer and drops its leaf pointer, so a stale
 * iterator never touches freed memory; on its next use it seeks to the first key >= the saved
 * key (and next() then skips the saved key itself). A version counter asserts this.
 *
 * Restore builds a new tree on the side from sorted keys (leaves filled to 7/8, inner levels
 * built bottom-up at commit) and swaps it in at restore_commit(), freeing the old tree.
 *
 * Memory: per key, the blob's 8-byte header and malloc rounding plus a 16-byte leaf slot at
 * ~70% fill; about 54 bytes beyond key + value for 16-byte keys and 100-byte values (see
 * bench/engine_bench.c). Builds with assertions check every invariant of the whole tree
 * (tree_check, O(n)) at close and after each restore.
 *
 * Limits: depth is at most TREE_DEPTH_MAX (non-root nodes keep >= NODE_KEYS_MIN keys, so
 * 2^64 keys fit in far fewer levels); no recursion anywhere. Known cost: a split rereads the
 * split nodes' blobs to rebuild prefixes and heads (about two blob reads per insert).
 */
#include "backend.h"

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODE_KEYS_MAX 64u                       /* leaf entries, or inner separators */
#define NODE_KEYS_MIN (NODE_KEYS_MAX / 4u)      /* non-root nodes rebalance below this */
#define NODE_KEYS_FILL (NODE_KEYS_MAX * 7u / 8u) /* bulk load fill */
#define PREFIX_BYTES_MAX 32u
#define TREE_DEPTH_MAX 24u /* inner levels; (NODE_KEYS_MIN + 1)^23 is far beyond 2^64 */

typedef struct mem_blob {
	uint32_t key_len;
	uint32_t val_len;
	uint8_t bytes[]; /* key, then value */
} mem_blob_t;

typedef struct mem_node {
	uint16_t count; /* leaf: entries; inner: separators (children = count + 1) */
	uint8_t is_leaf;
	uint8_t prefix_len;
	uint8_t prefix[PREFIX_BYTES_MAX];
	uint64_t heads[NODE_KEYS_MAX];
	mem_blob_t *keys[NODE_KEYS_MAX]; /* leaf: entry blobs; inner: separator copies */
} mem_node_t;

typedef struct mem_leaf {
	mem_node_t n;
	struct mem_leaf *next;
} mem_leaf_t;

typedef struct mem_inner {
	mem_node_t n;
	mem_node_t *child[NODE_KEYS_MAX + 1];
} mem_inner_t;

typedef struct mem_tree {
	mem_node_t *root; /* an empty leaf when the tree is empty */
	uint32_t height;  /* inner levels above the leaves */
	uint64_t key_count;
	uint64_t data_bytes;
	bool underfull_ok; /* a rebalance was skipped for lack of memory: fill is not guaranteed */
} mem_tree_t;

typedef struct mem_iter mem_iter_t;

typedef struct mem_engine {
	mem_tree_t tree;
	uint64_t applied_index;
	uint64_t version; /* +1 per write; a positioned iterator carries the version it saw */
	mem_iter_t *iters;
	char errmsg[64];
} mem_engine_t;

struct mem_iter {
	mem_engine_t *m; /* NULL once the engine is closed */
	mem_iter_t *prev, *next;
	mem_leaf_t *leaf; /* positioned when not NULL */
	uint32_t pos;
	uint64_t version;
	bool stale; /* a write happened while positioned: saved_key is where to re-seek */
	size_t saved_len;
	uint8_t saved_key[]; /* ENGINE_KEY_BYTES_MAX bytes, so saving never allocates */
};

typedef struct mem_restore {
	mem_leaf_t *first, *last, *before_last;
	size_t leaf_count;
	uint64_t key_count, data_bytes;
} mem_restore_t;

/* ------------------------------------------------------------------ keys and heads */

/* Callers may pass NULL for an empty key or value; internal code never sees NULL. */
static const uint8_t empty_bytes[1];

static const uint8_t *nonnull(const void *p) { return p ? p : empty_bytes; }

static int key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;
	if (c) return c;
	return alen < blen ? -1 : alen > blen;
}

static size_t lcp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, size_t cap)
{
	size_t n = alen < blen ? alen : blen;
	if (n > cap) n = cap;
	size_t i = 0;
	while (i < n && a[i] == b[i]) i++;
	return i;
}

/* The 8 key bytes from offset p as a big-endian integer, zero-padded past the end. Equal
 * heads say nothing (a key may end in zero bytes); different heads order the keys. */
static uint64_t head_of(const uint8_t *k, size_t len, size_t p)
{
	assert(p <= len);
	size_t n = len - p;
	if (n >= 8) {
		uint64_t w;
		memcpy(&w, k + p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
		w = __builtin_bswap64(w);
#endif
		return w;
	}
	uint64_t h = 0;
	for (size_t i = 0; i < 8; i++) h = h << 8 | (i < n ? k[p + i] : 0u);
	return h;
}

static mem_blob_t *blob_new(const void *key, size_t key_len, const void *val, size_t val_len)
{
	assert(key_len <= ENGINE_KEY_BYTES_MAX && val_len <= ENGINE_VALUE_BYTES_MAX);
	mem_blob_t *b = malloc(sizeof *b + key_len + val_len);
	if (!b) return NULL;
	b->key_len = (uint32_t)key_len;
	b->val_len = (uint32_t)val_len;
	if (key_len) memcpy(b->bytes, key, key_len);
	if (val_len) memcpy(b->bytes + key_len, val, val_len);
	return b;
}

/* The shortest s with a < s <= b: b cut one byte past the common prefix. */
static mem_blob_t *sep_new(const mem_blob_t *a, const mem_blob_t *b)
{
	assert(key_cmp(a->bytes, a->key_len, b->bytes, b->key_len) < 0);
	size_t n = lcp(a->bytes, a->key_len, b->bytes, b->key_len, SIZE_MAX) + 1;
	assert(n <= b->key_len);
	return blob_new(b->bytes, n, NULL, 0);
}

/* ------------------------------------------------------------------ nodes */

static mem_leaf_t *as_leaf(mem_node_t *n)
{
	assert(n->is_leaf);
	return (mem_leaf_t *)n;
}

static mem_inner_t *as_inner(mem_node_t *n)
{
	assert(!n->is_leaf);
	return (mem_inner_t *)n;
}

static mem_leaf_t *leaf_new(void)
{
	mem_leaf_t *l = malloc(sizeof *l);
	if (!l) return NULL;
	l->n.count = 0;
	l->n.is_leaf = 1;
	l->n.prefix_len = 0;
	l->next = NULL;
	return l;
}

static mem_inner_t *inner_new(void)
{
	mem_inner_t *in = malloc(sizeof *in);
	if (!in) return NULL;
	in->n.count = 0;
	in->n.is_leaf = 0;
	in->n.prefix_len = 0;
	return in;
}

/* Recompute the prefix (the common prefix of the first and last key, hence of all) and every
 * head; reads every key. */
static void node_rebuild(mem_node_t *n)
{
	if (n->count == 0) {
		n->prefix_len = 0;
		return;
	}
	const mem_blob_t *a = n->keys[0], *z = n->keys[n->count - 1];
	size_t q = lcp(a->bytes, a->key_len, z->bytes, z->key_len, PREFIX_BYTES_MAX);
	memcpy(n->prefix, a->bytes, q);
	n->prefix_len = (uint8_t)q;
	for (uint32_t i = 0; i < n->count; i++) n->heads[i] = head_of(n->keys[i]->bytes, n->keys[i]->key_len, q);
}

/* Shorten the prefix to q bytes; heads shift right and take their new top bytes from the old
 * prefix, so no key is read. */
static void node_prefix_shrink(mem_node_t *n, size_t q)
{
	size_t p = n->prefix_len, d = p - q;
	assert(q <= p);
	if (d == 0) return;
	uint64_t top = head_of(n->prefix, p, q); /* prefix[q..p) then zeros */
	for (uint32_t i = 0; i < n->count; i++) n->heads[i] = d >= 8 ? top : top | n->heads[i] >> (8 * d);
	n->prefix_len = (uint8_t)q;
}

/* Make the node's prefix a prefix of k (the node is about to hold k); returns k's head. */
static uint64_t node_admit(mem_node_t *n, const uint8_t *k, size_t len)
{
	if (n->count == 0) {
		size_t q = len < PREFIX_BYTES_MAX ? len : PREFIX_BYTES_MAX;
		if (q) memcpy(n->prefix, k, q);
		n->prefix_len = (uint8_t)q;
	} else {
		node_prefix_shrink(n, lcp(k, len, n->prefix, n->prefix_len, PREFIX_BYTES_MAX));
	}
	return head_of(k, len, n->prefix_len);
}

/* <0: k sorts before every key in the node; >0: after every key; 0: k starts with the prefix. */
static int prefix_cmp(const mem_node_t *n, const uint8_t *k, size_t len)
{
	size_t p = n->prefix_len;
	if (len >= p) return p ? memcmp(k, n->prefix, p) : 0;
	int c = len ? memcmp(k, n->prefix, len) : 0;
	return c ? c : -1;
}

/* Index of the first key >= k; *found when it is equal. */
static uint32_t node_lower_bound(const mem_node_t *n, const uint8_t *k, size_t len, bool *found)
{
	*found = false;
	if (n->count == 0) return 0;
	int c = prefix_cmp(n, k, len);
	if (c < 0) return 0;
	if (c > 0) return n->count;
	size_t p = n->prefix_len;
	uint64_t kh = head_of(k, len, p);
	uint32_t lo = 0, hi = n->count;
	while (lo < hi) {
		uint32_t mid = (lo + hi) / 2;
		uint64_t h = n->heads[mid];
		int r;
		if (h != kh) {
			r = kh < h ? -1 : 1;
		} else {
			const mem_blob_t *b = n->keys[mid];
			r = key_cmp(k + p, len - p, b->bytes + p, b->key_len - p);
		}
		if (r == 0) {
			*found = true;
			return mid;
		}
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* The child of an inner node whose range holds k. */
static uint32_t inner_child_index(const mem_node_t *n, const uint8_t *k, size_t len)
{
	bool found;
	uint32_t i = node_lower_bound(n, k, len, &found);
	return found ? i + 1 : i;
}

static void node_insert_key(mem_node_t *n, uint32_t pos, mem_blob_t *b)
{
	assert(n->count < NODE_KEYS_MAX && pos <= n->count);
	uint64_t h = node_admit(n, b->bytes, b->key_len);
	uint32_t tail = n->count - pos;
	memmove(&n->heads[pos + 1], &n->heads[pos], tail * sizeof n->heads[0]);
	memmove(&n->keys[pos + 1], &n->keys[pos], tail * sizeof n->keys[0]);
	n->heads[pos] = h;
	n->keys[pos] = b;
	n->count++;
}

static void node_remove_key(mem_node_t *n, uint32_t pos)
{
	assert(pos < n->count);
	uint32_t tail = n->count - pos - 1;
	memmove(&n->heads[pos], &n->heads[pos + 1], tail * sizeof n->heads[0]);
	memmove(&n->keys[pos], &n->keys[pos + 1], tail * sizeof n->keys[0]);
	n->count--;
}

static void node_replace_key(mem_node_t *n, uint32_t pos, mem_blob_t *b)
{
	assert(pos < n->count);
	n->keys[pos] = b;
	n->heads[pos] = node_admit(n, b->bytes, b->key_len);
}

/* Separator pos and child pos + 1. */
static void inner_insert(mem_inner_t *in, uint32_t pos, mem_blob_t *sep, mem_node_t *right)
{
	uint32_t tail = in->n.count - pos; /* children after pos + 1 */
	node_insert_key(&in->n, pos, sep);
	memmove(&in->child[pos + 2], &in->child[pos + 1], tail * sizeof in->child[0]);
	in->child[pos + 1] = right;
}

static void inner_remove(mem_inner_t *in, uint32_t pos)
{
	uint32_t tail = in->n.count - pos - 1;
	node_remove_key(&in->n, pos);
	memmove(&in->child[pos + 1], &in->child[pos + 2], tail * sizeof in->child[0]);
}

static void leaf_fill(mem_leaf_t *l, mem_blob_t *const *keys, uint32_t count)
{
	assert(count <= NODE_KEYS_MAX);
	memmove(l->n.keys, keys, count * sizeof keys[0]);
	l->n.count = (uint16_t)count;
	node_rebuild(&l->n);
}

static void inner_fill(mem_inner_t *in, mem_blob_t *const *seps, uint32_t count, mem_node_t *const *children)
{
	assert(count <= NODE_KEYS_MAX);
	memmove(in->n.keys, seps, count * sizeof seps[0]);
	memmove(in->child, children, (count + 1) * sizeof children[0]);
	in->n.count = (uint16_t)count;
	node_rebuild(&in->n);
}

/* ------------------------------------------------------------------ tree */

/* Ask for a node's header and heads at once: the cache lines then arrive in parallel instead
 * of one miss per binary-search probe. */
static void node_prefetch(const mem_node_t *n)
{
	const char *p = (const char *)n;
	for (size_t off = 0; off < offsetof(mem_node_t, keys); off += 64) __builtin_prefetch(p + off);
}

static mem_leaf_t *tree_find_leaf(const mem_tree_t *t, const uint8_t *k, size_t len)
{
	mem_node_t *n = t->root;
	for (uint32_t d = 0; d < t->height; d++) {
		n = as_inner(n)->child[inner_child_index(n, k, len)];
		node_prefetch(n);
	}
	return as_leaf(n);
}

static mem_leaf_t *tree_first_leaf(const mem_tree_t *t)
{
	mem_node_t *n = t->root;
	for (uint32_t d = 0; d < t->height; d++) n = as_inner(n)->child[0];
	return as_leaf(n);
}

static void free_leaf(mem_leaf_t *l)
{
	for (uint32_t i = 0; i < l->n.count; i++) free(l->n.keys[i]);
	free(l);
}

static void free_inner(mem_inner_t *in)
{
	for (uint32_t i = 0; i < in->n.count; i++) free(in->n.keys[i]);
	free(in);
}

/* Post-order walk with an explicit stack (depth <= TREE_DEPTH_MAX). */
static void tree_free(mem_tree_t *t)
{
	if (!t->root) return;
	if (t->height == 0) {
		free_leaf(as_leaf(t->root));
		t->root = NULL;
		return;
	}
	mem_inner_t *stack[TREE_DEPTH_MAX];
	uint32_t next[TREE_DEPTH_MAX];
	uint32_t sp = 0;
	stack[sp] = as_inner(t->root);
	next[sp++] = 0;
	while (sp > 0) {
		mem_inner_t *top = stack[sp - 1];
		uint32_t i = next[sp - 1]++;
		if (i > top->n.count) {
			free_inner(top);
			sp--;
			continue;
		}
		mem_node_t *c = top->child[i];
		if (c->is_leaf) {
			free_leaf(as_leaf(c));
		} else {
			assert(sp < TREE_DEPTH_MAX);
			stack[sp] = as_inner(c);
			next[sp++] = 0;
		}
	}
	t->root = NULL;
}

typedef struct tree_path {
	mem_node_t *node[TREE_DEPTH_MAX];
	uint32_t slot[TREE_DEPTH_MAX];  /* child taken at that level */
	bool rightmost[TREE_DEPTH_MAX]; /* node[d] is the last node of its level */
} tree_path_t;

static mem_leaf_t *tree_descend(const mem_tree_t *t, const uint8_t *k, size_t len, tree_path_t *path)
{
	mem_node_t *n = t->root;
	bool rightmost = true;
	assert(t->height < TREE_DEPTH_MAX);
	for (uint32_t d = 0; d < t->height; d++) {
		uint32_t i = inner_child_index(n, k, len);
		path->node[d] = n;
		path->slot[d] = i;
		path->rightmost[d] = rightmost;
		rightmost = rightmost && i == n->count;
		n = as_inner(n)->child[i];
		node_prefetch(n);
	}
	return as_leaf(n);
}

/* Insert b at pos into a full leaf: split it and every full ancestor. Everything needed is
 * allocated first; on -ENOMEM the tree is untouched. */
static int tree_insert_split(mem_tree_t *t, tree_path_t *path, mem_leaf_t *leaf, uint32_t pos, mem_blob_t *b)
{
	mem_blob_t *tmp[NODE_KEYS_MAX + 1];
	mem_node_t *tmp_child[NODE_KEYS_MAX + 2];
	mem_inner_t *spare[TREE_DEPTH_MAX + 1];
	uint32_t spare_n = 0, spare_used = 0;
	int d = (int)t->height - 1;
	while (d >= 0 && path->node[d]->count == NODE_KEYS_MAX) d--;
	uint32_t inner_needed = (uint32_t)((int)t->height - 1 - d) + (d < 0 ? 1u : 0u);
	if (d < 0 && t->height + 1 >= TREE_DEPTH_MAX) return -ENOMEM; /* unreachable in practice */

	uint32_t total = NODE_KEYS_MAX + 1;
	memcpy(tmp, leaf->n.keys, pos * sizeof tmp[0]);
	tmp[pos] = b;
	memcpy(tmp + pos + 1, leaf->n.keys + pos, (NODE_KEYS_MAX - pos) * sizeof tmp[0]);
	/* Appending at the end of the last leaf (sequential load): keep the left side 3/4 full. */
	uint32_t left_n = (pos == NODE_KEYS_MAX && !leaf->next) ? NODE_KEYS_MAX - NODE_KEYS_MIN : total / 2;
	mem_blob_t *sep = sep_new(tmp[left_n - 1], tmp[left_n]);
	mem_leaf_t *right = leaf_new();
	for (; spare_n < inner_needed; spare_n++)
		if (!(spare[spare_n] = inner_new())) break;
	if (!sep || !right || spare_n < inner_needed) {
		free(sep);
		free(right);
		for (uint32_t i = 0; i < spare_n; i++) free(spare[i]);
		return -ENOMEM;
	}

	leaf_fill(leaf, tmp, left_n);
	leaf_fill(right, tmp + left_n, total - left_n);
	right->next = leaf->next;
	leaf->next = right;

	mem_blob_t *up = sep;
	mem_node_t *new_child = &right->n;
	for (d = (int)t->height - 1; d >= 0; d--) {
		mem_inner_t *p = as_inner(path->node[d]);
		uint32_t i = path->slot[d];
		if (p->n.count < NODE_KEYS_MAX) {
			inner_insert(p, i, up, new_child);
			return 0;
		}
		/* Split p: NODE_KEYS_MAX + 1 separators, the middle one moves up. */
		memcpy(tmp, p->n.keys, i * sizeof tmp[0]);
		tmp[i] = up;
		memcpy(tmp + i + 1, p->n.keys + i, (NODE_KEYS_MAX - i) * sizeof tmp[0]);
		memcpy(tmp_child, p->child, (i + 1) * sizeof tmp_child[0]);
		tmp_child[i + 1] = new_child;
		memcpy(tmp_child + i + 2, p->child + i + 1, (NODE_KEYS_MAX - i) * sizeof tmp_child[0]);
		uint32_t ln = (i == NODE_KEYS_MAX && path->rightmost[d]) ? NODE_KEYS_MAX - NODE_KEYS_MIN : NODE_KEYS_MAX / 2;
		mem_inner_t *r = spare[spare_used++];
		up = tmp[ln];
		inner_fill(r, tmp + ln + 1, NODE_KEYS_MAX - ln, tmp_child + ln + 1);
		inner_fill(p, tmp, ln, tmp_child);
		new_child = &r->n;
	}
	mem_inner_t *root = spare[spare_used++];
	mem_node_t *kids[2] = {t->root, new_child};
	inner_fill(root, &up, 1, kids);
	t->root = &root->n;
	t->height++;
	assert(spare_used == spare_n);
	return 0;
}

/* Insert or overwrite. *old is the replaced blob (the caller frees it) or NULL. An overwrite
 * never allocates, so it never fails. */
static int tree_put(mem_tree_t *t, mem_blob_t *b, mem_blob_t **old)
{
	tree_path_t path;
	mem_leaf_t *leaf = tree_descend(t, b->bytes, b->key_len, &path);
	bool found;
	uint32_t pos = node_lower_bound(&leaf->n, b->bytes, b->key_len, &found);
	*old = NULL;
	if (found) {
		*old = leaf->n.keys[pos];
		leaf->n.keys[pos] = b; /* same key: same head */
		t->data_bytes = t->data_bytes - (*old)->val_len + b->val_len;
		return 0;
	}
	if (leaf->n.count < NODE_KEYS_MAX) {
		node_insert_key(&leaf->n, pos, b);
	} else {
		int rc = tree_insert_split(t, &path, leaf, pos, b);
		if (rc < 0) return rc;
	}
	t->key_count++;
	t->data_bytes += (uint64_t)b->key_len + b->val_len;
	return 0;
}

/* Rebalance children li and li + 1 of p (one of them is under NODE_KEYS_MIN): merge them when
 * they fit in one node, else split their keys evenly. Returns true when merged (p lost a key). */
static bool pair_rebalance(mem_tree_t *t, mem_inner_t *p, uint32_t li)
{
	mem_blob_t *tmp[2 * NODE_KEYS_MAX + 1];
	mem_node_t *tmp_child[2 * NODE_KEYS_MAX + 2];
	mem_node_t *l = p->child[li], *r = p->child[li + 1];
	uint32_t nl = l->count, nr = r->count;
	memcpy(tmp, l->keys, nl * sizeof tmp[0]);
	if (l->is_leaf) {
		memcpy(tmp + nl, r->keys, nr * sizeof tmp[0]);
		uint32_t total = nl + nr;
		if (total <= NODE_KEYS_MAX) {
			leaf_fill(as_leaf(l), tmp, total);
			as_leaf(l)->next = as_leaf(r)->next;
			free(r);
			free(p->n.keys[li]);
			inner_remove(p, li);
			return true;
		}
		uint32_t ln = total / 2;
		mem_blob_t *sep = sep_new(tmp[ln - 1], tmp[ln]);
		if (!sep) { /* stay underfull: correct, only less compact */
			t->underfull_ok = true;
			return false;
		}
		leaf_fill(as_leaf(l), tmp, ln);
		leaf_fill(as_leaf(r), tmp + ln, total - ln);
		free(p->n.keys[li]);
		node_replace_key(&p->n, li, sep);
		return false;
	}
	mem_inner_t *il = as_inner(l), *ir = as_inner(r);
	tmp[nl] = p->n.keys[li];
	memcpy(tmp + nl + 1, r->keys, nr * sizeof tmp[0]);
	memcpy(tmp_child, il->child, (nl + 1) * sizeof tmp_child[0]);
	memcpy(tmp_child + nl + 1, ir->child, (nr + 1) * sizeof tmp_child[0]);
	uint32_t total = nl + 1 + nr; /* separators */
	if (total <= NODE_KEYS_MAX) {
		inner_fill(il, tmp, total, tmp_child);
		free(ir);
		inner_remove(p, li); /* its separator moved down into l */
		return true;
	}
	uint32_t ln = total / 2;
	inner_fill(il, tmp, ln, tmp_child);
	inner_fill(ir, tmp + ln + 1, total - ln - 1, tmp_child + ln + 1);
	node_replace_key(&p->n, li, tmp[ln]);
	return false;
}

/* Remove k; returns its blob (the caller frees it) or NULL when absent. Never allocates
 * except for an optional separator (see pair_rebalance), so it never fails. */
static mem_blob_t *tree_remove(mem_tree_t *t, const uint8_t *k, size_t len)
{
	tree_path_t path;
	mem_leaf_t *leaf = tree_descend(t, k, len, &path);
	bool found;
	uint32_t pos = node_lower_bound(&leaf->n, k, len, &found);
	if (!found) return NULL;
	mem_blob_t *old = leaf->n.keys[pos];
	node_remove_key(&leaf->n, pos);
	t->key_count--;
	t->data_bytes -= (uint64_t)old->key_len + old->val_len;

	mem_node_t *n = &leaf->n;
	for (int d = (int)t->height - 1; d >= 0 && n->count < NODE_KEYS_MIN; d--) {
		mem_inner_t *p = as_inner(path.node[d]);
		uint32_t i = path.slot[d];
		if (!pair_rebalance(t, p, i > 0 ? i - 1 : 0)) break;
		n = &p->n;
	}
	if (t->height > 0 && t->root->count == 0) { /* the root lost its last separator */
		mem_inner_t *r = as_inner(t->root);
		t->root = r->child[0];
		t->height--;
		free(r);
	}
	return old;
}

/* ------------------------------------------------------------------ invariants */

#ifndef NDEBUG
static void node_check(const mem_node_t *n, bool is_root, bool fill_guaranteed)
{
	assert(n->count <= NODE_KEYS_MAX);
	assert(n->is_leaf || n->count >= 1);
	assert(is_root || !fill_guaranteed || n->count >= NODE_KEYS_MIN);
	for (uint32_t i = 0; i < n->count; i++) {
		const mem_blob_t *k = n->keys[i];
		assert(k->key_len >= n->prefix_len);
		assert(n->prefix_len == 0 || memcmp(k->bytes, n->prefix, n->prefix_len) == 0);
		assert(n->heads[i] == head_of(k->bytes, k->key_len, n->prefix_len));
		assert(i == 0 || key_cmp(n->keys[i - 1]->bytes, n->keys[i - 1]->key_len, k->bytes, k->key_len) < 0);
		(void)k;
	}
}

/* lo <= k < hi; NULL bounds are open. */
static bool key_in_range(const mem_blob_t *k, const mem_blob_t *lo, const mem_blob_t *hi)
{
	return (!lo || key_cmp(lo->bytes, lo->key_len, k->bytes, k->key_len) <= 0) &&
	       (!hi || key_cmp(k->bytes, k->key_len, hi->bytes, hi->key_len) < 0);
}

/* Check every node, separator range, head, the leaf chain, the depth and the counters: O(n),
 * run at close and after a restore in builds with assertions. Iterative. */
static void tree_check(const mem_tree_t *t)
{
	typedef struct frame {
		const mem_inner_t *n;
		uint32_t next;
		const mem_blob_t *lo, *hi;
	} frame_t;
	frame_t stack[TREE_DEPTH_MAX];
	uint32_t sp = 0;
	uint64_t keys = 0, bytes = 0;
	const mem_leaf_t *chain = tree_first_leaf(t);
	const mem_blob_t *prev = NULL;
	const mem_node_t *n = t->root;
	const mem_blob_t *lo = NULL, *hi = NULL;
	for (;;) {
		if (n) { /* visit n within [lo, hi) */
			node_check(n, n == t->root, !t->underfull_ok);
			for (uint32_t i = 0; i < n->count; i++) assert(key_in_range(n->keys[i], lo, hi));
			if (n->is_leaf) {
				assert(sp == t->height && n == &chain->n);
				for (uint32_t i = 0; i < n->count; i++) {
					const mem_blob_t *k = n->keys[i];
					assert(!prev || key_cmp(prev->bytes, prev->key_len, k->bytes, k->key_len) < 0);
					prev = k;
					keys++;
					bytes += (uint64_t)k->key_len + k->val_len;
				}
				assert(n->count > 0 || n == t->root);
				chain = chain->next;
				n = NULL;
			} else {
				assert(sp < TREE_DEPTH_MAX);
				stack[sp++] = (frame_t){(const mem_inner_t *)n, 0, lo, hi};
				n = NULL;
			}
			continue;
		}
		if (sp == 0) break;
		frame_t *f = &stack[sp - 1];
		if (f->next > f->n->n.count) {
			sp--;
			continue;
		}
		uint32_t i = f->next++;
		lo = i > 0 ? f->n->n.keys[i - 1] : f->lo;
		hi = i < f->n->n.count ? f->n->n.keys[i] : f->hi;
		n = f->n->child[i];
	}
	assert(chain == NULL);
	assert(keys == t->key_count && bytes == t->data_bytes);
	(void)keys;
	(void)bytes;
	(void)prev;
}
#else
static void tree_check(const mem_tree_t *t) { (void)t; }
#endif

/* ------------------------------------------------------------------ iterators */

static void iter_save(mem_iter_t *it)
{
	const mem_blob_t *b = it->leaf->n.keys[it->pos];
	memcpy(it->saved_key, b->bytes, b->key_len);
	it->saved_len = b->key_len;
	it->stale = true;
	it->leaf = NULL;
}

/* Called before every change to the tree. */
static void engine_will_write(mem_engine_t *m)
{
	for (mem_iter_t *it = m->iters; it; it = it->next)
		if (it->leaf) iter_save(it);
	m->version++;
}

static void iter_settle(mem_iter_t *it) /* skip past the end of a leaf */
{
	while (it->leaf && it->pos >= it->leaf->n.count) {
		it->leaf = it->leaf->next;
		it->pos = 0;
	}
}

static void iter_lower_bound(mem_iter_t *it, const uint8_t *k, size_t len)
{
	const mem_tree_t *t = &it->m->tree;
	bool found;
	it->stale = false;
	it->leaf = tree_find_leaf(t, k, len);
	it->pos = node_lower_bound(&it->leaf->n, k, len, &found);
	it->version = it->m->version;
	iter_settle(it);
}

/* A stale iterator re-seeks to its saved key. Returns true when the iterator is now on the
 * saved key itself. */
static bool iter_resume(mem_iter_t *it)
{
	if (!it->stale) return false;
	iter_lower_bound(it, it->saved_key, it->saved_len);
	if (!it->leaf) return false;
	const mem_blob_t *b = it->leaf->n.keys[it->pos];
	return key_cmp(b->bytes, b->key_len, it->saved_key, it->saved_len) == 0;
}

static void *mem_iter_new(void *state)
{
	mem_engine_t *m = state;
	mem_iter_t *it = malloc(sizeof *it + ENGINE_KEY_BYTES_MAX);
	if (!it) return NULL;
	it->m = m;
	it->leaf = NULL;
	it->pos = 0;
	it->version = m->version;
	it->stale = false;
	it->saved_len = 0;
	it->prev = NULL;
	it->next = m->iters;
	if (m->iters) m->iters->prev = it;
	m->iters = it;
	return it;
}

static void mem_iter_free(void *iter)
{
	mem_iter_t *it = iter;
	if (!it) return;
	if (it->m) {
		if (it->prev)
			it->prev->next = it->next;
		else
			it->m->iters = it->next;
		if (it->next) it->next->prev = it->prev;
	}
	free(it);
}

static void mem_iter_seek(void *iter, const void *key, size_t key_len)
{
	mem_iter_t *it = iter;
	assert(it->m && key_len <= ENGINE_KEY_BYTES_MAX);
	iter_lower_bound(it, nonnull(key), key_len);
}

static void mem_iter_seek_first(void *iter)
{
	mem_iter_t *it = iter;
	assert(it->m);
	it->stale = false;
	it->leaf = tree_first_leaf(&it->m->tree);
	it->pos = 0;
	it->version = it->m->version;
	iter_settle(it);
}

static bool mem_iter_valid(void *iter)
{
	mem_iter_t *it = iter;
	if (!it->m) return false;
	iter_resume(it);
	assert(!it->leaf || it->version == it->m->version);
	return it->leaf != NULL;
}

static void mem_iter_next(void *iter)
{
	mem_iter_t *it = iter;
	assert(it->m);
	if (it->stale) {
		if (!iter_resume(it)) return; /* the saved key is gone: already on its successor */
	}
	assert(it->leaf && it->version == it->m->version);
	it->pos++;
	iter_settle(it);
}

static const void *mem_iter_key(void *iter, size_t *key_len)
{
	mem_iter_t *it = iter;
	assert(it->m);
	iter_resume(it);
	assert(it->leaf && it->version == it->m->version);
	const mem_blob_t *b = it->leaf->n.keys[it->pos];
	*key_len = b->key_len;
	return b->bytes;
}

static const void *mem_iter_value(void *iter, size_t *val_len)
{
	mem_iter_t *it = iter;
	assert(it->m);
	iter_resume(it);
	assert(it->leaf && it->version == it->m->version);
	const mem_blob_t *b = it->leaf->n.keys[it->pos];
	*val_len = b->val_len;
	return b->bytes + b->key_len;
}

/* ------------------------------------------------------------------ engine ops */

static int mem_open(const engine_options_t *opts, void **state, char *errbuf, size_t errbuf_len)
{
	(void)opts; /* opts->dir is ignored: durability comes from the Raft log and snapshots */
	mem_engine_t *m = calloc(1, sizeof *m);
	mem_leaf_t *root = leaf_new();
	if (!m || !root) {
		free(m);
		free(root);
		if (errbuf && errbuf_len) snprintf(errbuf, errbuf_len, "memory engine: out of memory");
		return -ENOMEM;
	}
	m->tree.root = &root->n;
	*state = m;
	return 0;
}

static void mem_close(void *state)
{
	mem_engine_t *m = state;
	for (mem_iter_t *it = m->iters; it; it = it->next) it->m = NULL; /* freed later by their owners */
	tree_check(&m->tree);
	tree_free(&m->tree);
	free(m);
}

static const char *mem_errmsg(void *state)
{
	mem_engine_t *m = state;
	return m->errmsg;
}

static int mem_get(void *state, const void *key, size_t key_len, const void **val, size_t *val_len)
{
	mem_engine_t *m = state;
	const uint8_t *k = nonnull(key);
	mem_leaf_t *leaf = tree_find_leaf(&m->tree, k, key_len);
	bool found;
	uint32_t pos = node_lower_bound(&leaf->n, k, key_len, &found);
	if (!found) return -ENOENT;
	const mem_blob_t *b = leaf->n.keys[pos];
	*val = b->bytes + b->key_len;
	*val_len = b->val_len;
	return 0;
}

static int nomem(mem_engine_t *m)
{
	snprintf(m->errmsg, sizeof m->errmsg, "memory engine: out of memory");
	return -ENOMEM;
}

static int commit_one(mem_engine_t *m, const engine_op_t *op, uint64_t applied_index)
{
	if (op->type == ENGINE_OP_PUT) {
		mem_blob_t *b = blob_new(op->key, op->key_len, op->val, op->val_len), *old;
		if (!b) return nomem(m);
		engine_will_write(m);
		if (tree_put(&m->tree, b, &old) < 0) {
			free(b);
			return nomem(m);
		}
		free(old);
	} else {
		assert(op->type == ENGINE_OP_DELETE);
		engine_will_write(m);
		free(tree_remove(&m->tree, nonnull(op->key), op->key_len));
	}
	m->applied_index = applied_index;
	return 0;
}

static int op_ptr_cmp(const void *a, const void *b)
{
	const engine_op_t *x = *(const engine_op_t *const *)a, *y = *(const engine_op_t *const *)b;
	int c = key_cmp(nonnull(x->key), x->key_len, nonnull(y->key), y->key_len);
	if (c) return c;
	return x < y ? -1 : x > y; /* same key: batch order, so the last op of a run wins */
}

static int commit_many(mem_engine_t *m, const engine_op_t *ops, size_t n, uint64_t applied_index)
{
	mem_tree_t *t = &m->tree;
	const engine_op_t **eff = malloc(n * sizeof *eff);
	mem_blob_t **fresh = calloc(n, sizeof *fresh), **olds = calloc(n, sizeof *olds);
	size_t e = 0, applied = 0;
	if (!eff || !fresh || !olds) goto err;
	for (size_t i = 0; i < n; i++) eff[i] = &ops[i];
	qsort(eff, n, sizeof *eff, op_ptr_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i + 1 < n && key_cmp(nonnull(eff[i]->key), eff[i]->key_len, nonnull(eff[i + 1]->key),
					 eff[i + 1]->key_len) == 0)
			continue;
		eff[e++] = eff[i];
	}
	for (size_t i = 0; i < e; i++) {
		if (eff[i]->type != ENGINE_OP_PUT) continue;
		fresh[i] = blob_new(eff[i]->key, eff[i]->key_len, eff[i]->val, eff[i]->val_len);
		if (!fresh[i]) goto err;
	}
	engine_will_write(m);
	for (; applied < e; applied++) {
		if (!fresh[applied]) continue;
		if (tree_put(t, fresh[applied], &olds[applied]) < 0) goto undo;
	}
	for (size_t i = 0; i < e; i++) {
		if (fresh[i]) {
			free(olds[i]);
		} else {
			assert(eff[i]->type == ENGINE_OP_DELETE);
			free(tree_remove(t, nonnull(eff[i]->key), eff[i]->key_len));
		}
	}
	m->applied_index = applied_index;
	free(eff);
	free(fresh);
	free(olds);
	return 0;
undo:
	while (applied-- > 0) {
		if (!fresh[applied]) continue;
		mem_blob_t *back;
		if (olds[applied]) {
			int urc = tree_put(t, olds[applied], &back); /* an overwrite: cannot fail */
			assert(urc == 0);
			(void)urc;
		} else {
			back = tree_remove(t, fresh[applied]->bytes, fresh[applied]->key_len);
		}
		assert(back == fresh[applied]);
	}
err:
	if (fresh)
		for (size_t i = 0; i < e; i++) free(fresh[i]);
	free(eff);
	free(fresh);
	free(olds);
	return nomem(m);
}

static int mem_commit(void *state, const engine_op_t *ops, size_t n, uint64_t applied_index)
{
	mem_engine_t *m = state;
	if (n == 0) {
		m->applied_index = applied_index;
		return 0;
	}
	if (n == 1) return commit_one(m, ops, applied_index);
	return commit_many(m, ops, n, applied_index);
}

static uint64_t mem_applied_index(void *state) { return ((mem_engine_t *)state)->applied_index; }
static uint64_t mem_key_count(void *state) { return ((mem_engine_t *)state)->tree.key_count; }
static uint64_t mem_data_bytes(void *state) { return ((mem_engine_t *)state)->tree.data_bytes; }

/* ------------------------------------------------------------------ restore (bulk load) */

static void restore_free(mem_restore_t *r)
{
	mem_leaf_t *l = r->first;
	while (l) {
		mem_leaf_t *next = l->next;
		free_leaf(l);
		l = next;
	}
	free(r);
}

static void *mem_restore_begin(void *state)
{
	(void)state;
	mem_restore_t *r = calloc(1, sizeof *r);
	mem_leaf_t *l = leaf_new();
	if (!r || !l) {
		free(r);
		free(l);
		return NULL;
	}
	r->first = r->last = l;
	r->leaf_count = 1;
	return r;
}

static int mem_restore_put(void *restore, const void *key, size_t key_len, const void *val, size_t val_len)
{
	mem_restore_t *r = restore;
	mem_leaf_t *l = r->last;
	assert(l->n.count == 0 || key_cmp(l->n.keys[l->n.count - 1]->bytes, l->n.keys[l->n.count - 1]->key_len,
					   key, key_len) < 0);
	mem_blob_t *b = blob_new(key, key_len, val, val_len);
	if (!b) return -ENOMEM;
	if (l->n.count == NODE_KEYS_FILL) {
		mem_leaf_t *nl = leaf_new();
		if (!nl) {
			free(b);
			return -ENOMEM;
		}
		node_rebuild(&l->n);
		l->next = nl;
		r->before_last = l;
		r->last = l = nl;
		r->leaf_count++;
	}
	l->n.keys[l->n.count++] = b;
	r->key_count++;
	r->data_bytes += key_len + val_len;
	return 0;
}

/* Inner nodes a bottom-up build of `leaves` leaves needs. */
static size_t build_inner_count(size_t leaves)
{
	size_t total = 0, c = leaves;
	while (c > 1) {
		c = (c + NODE_KEYS_FILL) / (NODE_KEYS_FILL + 1);
		total += c;
	}
	return total;
}

static int mem_restore_commit(void *state, void *restore, uint64_t applied_index)
{
	mem_engine_t *m = state;
	mem_restore_t *r = restore;
	size_t n = r->leaf_count, inner_n = build_inner_count(n), seps_made = 0, spares_made = 0;
	mem_node_t **level = malloc(n * sizeof *level);
	mem_blob_t **low = calloc(n, sizeof *low); /* low[i]: separator left of level[i] */
	mem_inner_t **spare = calloc(inner_n ? inner_n : 1, sizeof *spare);
	if (!level || !low || !spare) goto nomem;

	if (n > 1 && r->last->n.count < NODE_KEYS_MIN) { /* even out the last two leaves */
		mem_blob_t *tmp[2 * NODE_KEYS_MAX];
		mem_leaf_t *a = r->before_last, *z = r->last;
		uint32_t total = a->n.count + z->n.count;
		memcpy(tmp, a->n.keys, a->n.count * sizeof tmp[0]);
		memcpy(tmp + a->n.count, z->n.keys, z->n.count * sizeof tmp[0]);
		leaf_fill(a, tmp, total / 2);
		leaf_fill(z, tmp + total / 2, total - total / 2);
	}
	node_rebuild(&r->last->n);

	size_t i = 0;
	for (mem_leaf_t *l = r->first; l; l = l->next) level[i++] = &l->n;
	assert(i == n);
	for (i = 1; i < n; i++, seps_made++) {
		const mem_node_t *a = level[i - 1], *z = level[i];
		if (!(low[i] = sep_new(a->keys[a->count - 1], z->keys[0]))) goto nomem;
	}
	for (; spares_made < inner_n; spares_made++)
		if (!(spare[spares_made] = inner_new())) goto nomem;

	/* Nothing can fail from here on. */
	size_t used = 0;
	uint32_t height = 0;
	while (n > 1) {
		size_t groups = (n + NODE_KEYS_FILL) / (NODE_KEYS_FILL + 1), start = 0;
		for (size_t g = 0; g < groups; g++) {
			size_t k = n / groups + (g < n % groups ? 1 : 0); /* children of this node */
			mem_inner_t *in = spare[used++];
			inner_fill(in, low + start + 1, (uint32_t)(k - 1), level + start);
			mem_blob_t *in_low = low[start];
			level[g] = &in->n;
			low[g] = in_low;
			start += k;
		}
		assert(start == n);
		n = groups;
		height++;
	}
	assert(used == inner_n);

	engine_will_write(m);
	tree_free(&m->tree);
	m->tree.root = level[0];
	m->tree.height = height;
	m->tree.key_count = r->key_count;
	m->tree.data_bytes = r->data_bytes;
	m->tree.underfull_ok = false;
	m->applied_index = applied_index;
	tree_check(&m->tree);
	r->first = NULL; /* the leaves now belong to the tree */
	restore_free(r);
	free(level);
	free(low);
	free(spare);
	return 0;
nomem:
	for (i = 1; low && i <= seps_made; i++) free(low[i]);
	for (i = 0; i < spares_made; i++) free(spare[i]);
	free(level);
	free(low);
	free(spare);
	restore_free(r);
	return nomem(m);
}

static void mem_restore_abort(void *state, void *restore)
{
	(void)state;
	restore_free(restore);
}

const engine_backend_ops_t engine_memory_backend = {
	.name = "memory",
	.open = mem_open,
	.close = mem_close,
	.errmsg = mem_errmsg,
	.get = mem_get,
	.commit = mem_commit,
	.applied_index = mem_applied_index,
	.key_count = mem_key_count,
	.data_bytes = mem_data_bytes,
	.iter_new = mem_iter_new,
	.iter_free = mem_iter_free,
	.iter_seek = mem_iter_seek,
	.iter_seek_first = mem_iter_seek_first,
	.iter_valid = mem_iter_valid,
	.iter_next = mem_iter_next,
	.iter_key = mem_iter_key,
	.iter_value = mem_iter_value,
	.restore_begin = mem_restore_begin,
	.restore_put = mem_restore_put,
	.restore_commit = mem_restore_commit,
	.restore_abort = mem_restore_abort,
};
