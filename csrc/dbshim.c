/*
 * dbshim.c - a thin C veneer over Berkeley DB 5.3 for src/sys/db.rs.
 *
 * Berkeley DB's API is a table of function pointers inside its structs, which
 * Rust cannot call without mirroring the struct layouts. Each function here
 * makes exactly one such call and marshals its arguments; every decision
 * (flags, cache sizing, error texts, locking) is taken in Rust.
 *
 * Results: the Berkeley DB status (0, an errno value, or a DB_* code).
 * Returned data pointers refer to memory owned by the handle/cursor, valid
 * until its next call; Rust copies them at once.
 */
#include <string.h>
#include <db.h>

const int dbshim_notfound = DB_NOTFOUND;
const int dbshim_keyexist = DB_KEYEXIST;
const int dbshim_keyempty = DB_KEYEMPTY;
const int dbshim_hash = DB_HASH;
const int dbshim_btree = DB_BTREE;
const unsigned dbshim_rdonly = DB_RDONLY;
const unsigned dbshim_create = DB_CREATE;
const unsigned dbshim_truncate = DB_TRUNCATE;
const unsigned dbshim_env_flags = DB_INIT_MPOOL | DB_CREATE | DB_PRIVATE;
const int dbshim_compiled_major = DB_VERSION_MAJOR;
const int dbshim_compiled_minor = DB_VERSION_MINOR;
const int dbshim_compiled_patch = DB_VERSION_PATCH;

typedef void (*dbshim_errcall_fn)(const DB_ENV *, const char *, const char *);

void    dbshim_version(int *major, int *minor, int *patch)
{
    (void) db_version(major, minor, patch);
}

int     dbshim_env_create(DB_ENV **envp)
{
    *envp = 0;
    return db_env_create(envp, 0);
}

void    dbshim_env_set_errcall(DB_ENV *env, dbshim_errcall_fn fn, const char *pfx)
{
    env->set_errcall(env, fn);
    env->set_errpfx(env, pfx);
}

int     dbshim_env_get_cachesize(DB_ENV *env, u_int32_t *gbytes,
				         u_int32_t *bytes, int *ncache)
{
    return env->get_cachesize(env, gbytes, bytes, ncache);
}

int     dbshim_env_set_cache_max(DB_ENV *env, u_int32_t gbytes, u_int32_t bytes)
{
    return env->set_cache_max(env, gbytes, bytes);
}

int     dbshim_env_set_cachesize(DB_ENV *env, u_int32_t gbytes,
				         u_int32_t bytes, int ncache)
{
    return env->set_cachesize(env, gbytes, bytes, ncache);
}

int     dbshim_env_open(DB_ENV *env, const char *home, u_int32_t flags)
{
    return env->open(env, home, flags, 0);
}

int     dbshim_env_close(DB_ENV *env)
{
    return env->close(env, 0);
}

int     dbshim_db_create(DB **dbp, DB_ENV *env)
{
    *dbp = 0;
    return db_create(dbp, env, 0);
}

/* DB->verify on a handle of its own (verify destroys the handle). */
int     dbshim_env_verify(DB_ENV *env, const char *file)
{
    DB     *db;
    int     status;

    if ((status = db_create(&db, env, 0)) != 0)
	return status;
    return db->verify(db, file, 0, 0, 0);
}

int     dbshim_db_set_h_nelem(DB *db, u_int32_t nelem)
{
    return db->set_h_nelem(db, nelem);
}

int     dbshim_db_open(DB *db, const char *file, int type, u_int32_t flags,
		               int mode)
{
    return db->open(db, 0, file, 0, (DBTYPE) type, flags, mode);
}

int     dbshim_db_close(DB *db)
{
    return db->close(db, 0);
}

int     dbshim_db_get(DB *db, const void *key, u_int32_t klen,
		              const void **val, u_int32_t *vlen)
{
    DBT     k, v;
    int     status;

    memset(&k, 0, sizeof(k));
    memset(&v, 0, sizeof(v));
    k.data = (void *) key;
    k.size = klen;
    if ((status = db->get(db, 0, &k, &v, 0)) == 0) {
	*val = v.data;
	*vlen = v.size;
    }
    return status;
}

int     dbshim_db_put(DB *db, const void *key, u_int32_t klen,
		              const void *val, u_int32_t vlen, u_int32_t flags)
{
    DBT     k, v;

    memset(&k, 0, sizeof(k));
    memset(&v, 0, sizeof(v));
    k.data = (void *) key;
    k.size = klen;
    v.data = (void *) val;
    v.size = vlen;
    return db->put(db, 0, &k, &v, flags);
}

const unsigned dbshim_nooverwrite = DB_NOOVERWRITE;

int     dbshim_db_del(DB *db, const void *key, u_int32_t klen)
{
    DBT     k;

    memset(&k, 0, sizeof(k));
    k.data = (void *) key;
    k.size = klen;
    return db->del(db, 0, &k, 0);
}

int     dbshim_db_sync(DB *db)
{
    return db->sync(db, 0);
}

int     dbshim_db_fd(DB *db, int *fd)
{
    return db->fd(db, fd);
}

int     dbshim_db_cursor(DB *db, DBC **cursor)
{
    *cursor = 0;
    return db->cursor(db, 0, cursor, 0);
}

int     dbshim_cursor_get(DBC *cursor, int next, const void **key,
			          u_int32_t *klen, const void **val,
			          u_int32_t *vlen)
{
    DBT     k, v;
    int     status;

    memset(&k, 0, sizeof(k));
    memset(&v, 0, sizeof(v));
    if ((status = cursor->get(cursor, &k, &v, next ? DB_NEXT : DB_FIRST)) == 0) {
	*key = k.data;
	*klen = k.size;
	*val = v.data;
	*vlen = v.size;
    }
    return status;
}

int     dbshim_cursor_close(DBC *cursor)
{
    return cursor->close(cursor);
}
