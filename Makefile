# Makefile for the workflow extension (PGXS).
#
# make && make install           build and install into the pg_config on PATH
# test/run                       the whole test suite (see README.md)

EXTENSION    = workflow
EXTVERSION   = 1.0
MODULE_big   = workflow
OBJS         = src/workflow.o src/definitions.o src/wakeup.o src/worker.o \
               src/launcher.o src/runner.o src/sweeper.o src/task.o src/poll.o src/api.o
DATA         = workflow--$(EXTVERSION).sql
PGFILEDESC   = "workflow - job queues and multi-step workflows inside PostgreSQL"

# PostgreSQL's own headers trip -Wunused-parameter and -Wmissing-field-initializers
PG_CFLAGS   += -Wall -Wextra -Werror -Wno-unused-parameter \
               -Wno-missing-field-initializers

# pg_regress: the SQL surface and its error messages, on a private instance
# with the library preloaded and no runner executing jobs.
REGRESS      = $(basename $(notdir $(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-instance=tmp_regress --temp-config=test/conf/regress.conf \
               --load-extension=workflow

# Isolation specs: concurrent claims, on their own private instance.
ISOLATION      = $(basename $(notdir $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --temp-instance=tmp_isolation \
                 --temp-config=test/conf/regress.conf --load-extension=workflow

# TAP tests (PostgreSQL::Test::Cluster); each file starts its own cluster.
TAP_TESTS    = 1
PROVE_TESTS  = test/t/*.pl

PG_CONFIG   ?= pg_config
PGXS        := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

EXTRA_CLEAN  = tmp_regress tmp_isolation output_iso results regression.diffs regression.out
