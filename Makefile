# Makefile for the workflow extension (PGXS).
#
# make && make install           build and install into the pg_config on PATH
# test/run                       the whole test suite (see README.md)

EXTENSION    = workflow
EXTVERSION   = 1.1
MODULE_big   = workflow
OBJS         = src/workflow.o src/definitions.o src/task_cache.o src/wakeup.o src/worker.o \
               src/launcher.o src/databases.o src/runner.o src/sweeper.o src/task.o src/poll.o src/report.o src/api.o src/lease.o src/plans.o \
               src/names.o src/crashrecord.o src/concurrency_key.o src/guard.o
# workflow--1.0.sql is the released 1.0, frozen; the scripts of 1.1 are
# built from src/sql/ (see the rules below and src/sql/README.md)
PREV_VERSION = 1.0
DATA         = workflow--1.0.sql
DATA_built   = workflow--$(EXTVERSION).sql workflow--$(PREV_VERSION)--$(EXTVERSION).sql
PGFILEDESC   = "workflow - job queues and multi-step workflows inside PostgreSQL"

# PostgreSQL's own headers trip -Wunused-parameter and -Wmissing-field-initializers.
# Warnings are errors only when asked: make COPT=-Werror (CI; client/ too).
PG_CFLAGS   += -Wall -Wextra -Wno-unused-parameter \
               -Wno-missing-field-initializers

# pg_regress: the SQL surface and its error messages, on a private instance
# with the library preloaded and no runner executing jobs.
REGRESS      = $(basename $(notdir $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-instance=tmp_regress --temp-config=test/conf/regress.conf \
               --load-extension=workflow

# Isolation specs: concurrent claims, on their own private instance.
ISOLATION      = $(basename $(notdir $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --temp-instance=tmp_isolation \
                 --temp-config=test/conf/isolation.conf --load-extension=workflow

# TAP tests (PostgreSQL::Test::Cluster); each file starts its own cluster.
TAP_TESTS    = 1
PROVE_TESTS  = test/t/*.pl
# their shared module test/perl/WorkflowNode.pm (prove runs in the tree root);
# override: also when PROVE_FLAGS is given on the command line (test/run does)
override PROVE_FLAGS += -I ./test/perl

# pgxs.mk reads EXTRA_CLEAN when it is included
EXTRA_CLEAN  = tmp_regress tmp_isolation output_iso results regression.diffs regression.out \
               log

PG_CONFIG   ?= pg_config
PGXS        := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS knows no header dependencies: every object (and its JIT bitcode)
# includes the shared-memory layout, so a change of a header rebuilds all.
$(OBJS) $(OBJS:.o=.bc): src/workflow.h src/compat.h

# ---------------------------------------------------------------------------
# The SQL scripts, from the ordered sources in src/sql/ ("schema once,
# functions re-run"; src/sql/README.md):
#   workflow--$(EXTVERSION).sql      00_header.sql, the schema 0[1-9]_*.sql, the code [1-9][0-9]_*.sql
#   workflow--$(PREV_VERSION)--$(EXTVERSION).sql  updates/$(PREV_VERSION)--$(EXTVERSION).sql (the schema changes), the code again
SQL_HEADER   = src/sql/00_header.sql
SQL_SCHEMA   = $(sort $(wildcard src/sql/0[1-9]_*.sql))
SQL_CODE     = $(sort $(wildcard src/sql/[1-9][0-9]_*.sql))
SQL_UPDATE   = src/sql/updates/$(PREV_VERSION)--$(EXTVERSION).sql
# each source after a line naming it
sql_cat      = for f in $(1); do printf '\n-- %s\n\n' "$$f"; cat "$$f" || exit 1; done

workflow--$(EXTVERSION).sql: $(SQL_HEADER) $(SQL_SCHEMA) $(SQL_CODE) Makefile
	{ cat $(SQL_HEADER) && $(call sql_cat,$(SQL_SCHEMA) $(SQL_CODE)); } >$@.tmp && mv $@.tmp $@

workflow--$(PREV_VERSION)--$(EXTVERSION).sql: $(SQL_UPDATE) $(SQL_CODE) Makefile
	{ cat $(SQL_UPDATE) && $(call sql_cat,$(SQL_CODE)); } >$@.tmp && mv $@.tmp $@

EXTRA_CLEAN += $(DATA_built) $(addsuffix .tmp,$(DATA_built))

# ---------------------------------------------------------------------------
# The client, workflow-worker: a frontend program with its own PGXS Makefile
# in client/ (PROGRAM cannot be combined with MODULE_big), installed into
# PostgreSQL's bin directory.  Makefile.global's recurse makes all, install,
# uninstall and clean run there too, with the same command-line variables.
$(call recurse,all install uninstall clean,client)
