/* inotab.h - metastored's inode table: the kernel's nodeids and what they stand for.
 *
 * A FUSE nodeid is the record's ino (the same on every node, stable across rename; the root is
 * 1). The table maps ino -> entry {key, lookup count, open count, provisional attributes} and
 * key -> ino, so a handler resolves the nodeid the kernel sends to the key it means, and apply
 * events (rename, delete, create) keep the mapping true for changes made anywhere.
 *
 * Lookup counts follow libfuse's rules: every reply that hands the kernel an entry (lookup,
 * create, mkdir, symlink, mknod, readdirplus) adds one, forget subtracts what the kernel says.
 * An entry is freed when both its lookup count and its open count reach zero; the root never.
 *
 * An entry is "hooked" when it has a key; deleting or replacing its record unhooks it (its key
 * is gone, the kernel may still hold the nodeid until forget). At most one hooked entry per
 * key: hooking a key that another entry holds unhooks that one.
 *
 * A provisional entry is a file created by this node's open(O_CREAT) that is not committed yet
 * (its ino was chosen here; the committing FLUSH creates the record with it). Its attributes
 * live in the entry. Provisional entries are also on a list, so a directory listing can show
 * them without scanning the whole table.
 *
 * Costs: hash lookups O(1); a rename moves the entries under a renamed directory by a scan of
 * every entry (O(table); directory renames are rare). Single-threaded: the loop thread owns it.
 */
#ifndef METASTORE_FS_INOTAB_H
#define METASTORE_FS_INOTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INOTAB_ROOT_INO 1u
#define INOTAB_ENTRIES_MAX (1u << 26) /* beyond this, hooking fails with -ENFILE */

typedef struct inotab_entry {
	uint64_t ino;
	char *key; /* NUL-terminated; NULL when unhooked; "" for the root */
	size_t key_len;
	uint64_t nlookup; /* kernel references */
	uint32_t open_count;
	bool provisional;
	/* provisional attributes (the record's, once committed, come from the state machine) */
	uint32_t mode, uid, gid;
	int64_t mtime_ns, ctime_ns;
	uint64_t size;
	bool attrib_set; /* chmod/chown/utimens while provisional (SM_TXN_ATTRIB_OPEN at its commit) */
	/* the record incarnation this entry stands for (0 = unknown); flush compares it */
	int64_t create_revision;
	/* size the kernel believes while a handle holds uncommitted data (see fs/fsops.c) */
	bool dirty_size_valid;
	uint64_t dirty_size;
	/* commits started by a release and not applied yet (fs/fsops.c: opens wait for them) */
	uint32_t commits_inflight;
	/* mod_revision of the attributes last handed to the kernel (fs/fsops.c) */
	int64_t reported_mod_revision;
	/* nonzero: the record's ino, which differs from this nodeid (a provisional file the
	 * state machine created under another ino; fs/commit.c keeps the kernel's nodeid) */
	uint64_t rec_ino;
	/* private to inotab.c */
	struct inotab_entry *next_by_ino, *next_by_key, *prov_prev, *prov_next;
	uint64_t key_hash;
} inotab_entry_t;

typedef struct inotab inotab_t;

/* 0 or -ENOMEM; the root entry (key "") exists. entries_max bounds the table (0 means
 * INOTAB_ENTRIES_MAX); hooking a new ino beyond it fails with -ENFILE. */
int inotab_new(size_t entries_max, inotab_t **out);
void inotab_free(inotab_t *t);

size_t inotab_count(const inotab_t *t); /* entries, root included */
size_t inotab_provisional_count(const inotab_t *t);

inotab_entry_t *inotab_get(const inotab_t *t, uint64_t ino);
inotab_entry_t *inotab_find_key(const inotab_t *t, const char *key, size_t key_len);

/* Entry for ino at key, created if missing (nlookup 0, open 0, not provisional), moved to key
 * if it was elsewhere or unhooked. Another entry hooked at key is unhooked. Returns 0, -ENOMEM,
 * -ENFILE (table full). ino must not be 0. */
int inotab_hook(inotab_t *t, uint64_t ino, const char *key, size_t key_len, inotab_entry_t **out);

/* The entry for ino, created unhooked (no key, counts 0) if missing: for a nodeid handed to
 * the kernel under a name the state machine no longer has (watch/'s replays of a delete or a
 * rename). 0, -ENOMEM, -ENFILE. ino must not be 0. */
int inotab_get_or_add(inotab_t *t, uint64_t ino, inotab_entry_t **out);

/* Removes the entry's key (it stays until forgotten and closed). No-op on an unhooked entry;
 * the root cannot be unhooked. Clears provisional. */
void inotab_unhook(inotab_t *t, inotab_entry_t *e);

/* Marks a hooked entry provisional (on the list) or not. */
void inotab_set_provisional(inotab_t *t, inotab_entry_t *e, bool provisional);
/* Walks provisional entries: start with NULL, returns NULL at the end. */
inotab_entry_t *inotab_next_provisional(const inotab_t *t, const inotab_entry_t *prev);

/* Lookup counting. forget returns true when the entry was freed. Forgetting more than the
 * count clamps at zero (the kernel never does; asserted in debug builds). */
void inotab_ref(inotab_entry_t *e, uint64_t n);
bool inotab_forget(inotab_t *t, uint64_t ino, uint64_t n);
void inotab_open(inotab_entry_t *e);
bool inotab_close(inotab_t *t, inotab_entry_t *e); /* true when freed */

/* Apply events. rename: the entry at from moves to to, and so does every entry below from/
 * (to/...); an entry at to (or below it) that is not moving is unhooked. exchange: the
 * entries at and below a and b swap places. delete: the entry at key is unhooked (only that
 * key; a prefix delete sends one event per key). Return 0 or -ENOMEM (then the table is
 * unchanged except for unhooked entries, which is safe: they are looked up again). */
int inotab_rename(inotab_t *t, const char *from, size_t from_len, const char *to, size_t to_len);
int inotab_exchange(inotab_t *t, const char *a, size_t a_len, const char *b, size_t b_len);
void inotab_delete(inotab_t *t, const char *key, size_t key_len);

#endif
