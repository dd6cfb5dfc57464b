/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Differences between the PostgreSQL major versions workflow builds
 *		against (15 to 18; 15 and 18 are tested in CI), kept in one place so
 *		that the rest of the code reads as if there were only one version.
 *
 *		Everything the C code uses compiles unchanged from 15 to 18 except
 *		what is below.  Differences of behaviour met by the tests are not C:
 *		from 17 on, the array type of an extension's type is an extension
 *		member of its own; from 18 on, NOT NULL constraints are catalogued
 *		(and named after their table), and out-of-range GUC errors print
 *		the bounds with their unit.
 *
 * Copyright (c) 2026, the workflow developers
 *
 *-------------------------------------------------------------------------
 */
#ifndef WORKFLOW_COMPAT_H
#define WORKFLOW_COMPAT_H

#include "postgres.h"
#include "storage/proc.h"

#if PG_VERSION_NUM < 150000
#error "workflow requires PostgreSQL 15 or later"
#endif

/*
 * Index of this backend's PGPROC in the proc array: pgprocno up to 16,
 * ProcNumber from 17 on.
 */
#if PG_VERSION_NUM >= 170000
#define WF_MY_PROC_NUMBER		MyProcNumber
#else
#define WF_MY_PROC_NUMBER		(MyProc->pgprocno)
#endif

/*
 * The local id of this backend's current top-level transaction: in
 * MyProc->vxid from 17 on.
 */
#if PG_VERSION_NUM >= 170000
#define WF_MY_LXID				(MyProc->vxid.lxid)
#else
#define WF_MY_LXID				(MyProc->lxid)
#endif

/* whether a role owns a database: object_ownercheck from 16 on */
#if PG_VERSION_NUM >= 160000
#define WF_DATABASE_OWNERCHECK(dboid, roleid) \
	object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#else
#define WF_DATABASE_OWNERCHECK(dboid, roleid) \
	pg_database_ownercheck((dboid), (roleid))
#endif

/*
 * Start an index scan: index_beginscan() takes the scan's instrumentation
 * from 18 on (NULL: none).
 */
#if PG_VERSION_NUM >= 180000
#define WF_INDEX_BEGINSCAN(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define WF_INDEX_BEGINSCAN(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/* varatt.h was split out of postgres.h in 16 */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

#endif							/* WORKFLOW_COMPAT_H */
