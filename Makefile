# Makefile for the workflow extension (PGXS).
#
# make && make install           build and install into the pg_config on PATH
# test/run                       the whole test suite (see README.md)

EXTENSION    = workflow
EXTVERSION   = 1.0
MODULE_big   = workflow
OBJS         = src/workflow.o src/definitions.o src/steps.o src/wakeup.o src/worker.o \
               src/launcher.o src/runner.o src/sweeper.o src/task.o src/poll.o src/report.o src/api.o src/lease.o
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
                 --temp-config=test/conf/isolation.conf --load-extension=workflow

# TAP tests (PostgreSQL::Test::Cluster); each file starts its own cluster.
TAP_TESTS    = 1
PROVE_TESTS  = test/t/*.pl

# pgxs.mk reads EXTRA_CLEAN when it is included
EXTRA_CLEAN  = tmp_regress tmp_isolation output_iso results regression.diffs regression.out \
               log workflow-worker

PG_CONFIG   ?= pg_config
PGXS        := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS knows no header dependencies: every object (and its JIT bitcode)
# includes the shared-memory layout, so a change of a header rebuilds all.
$(OBJS) $(OBJS:.o=.bc): src/workflow.h src/compat.h

# ---------------------------------------------------------------------------
# The client, workflow-worker (src/client/): a plain program linked with
# libpq, installed into PostgreSQL's bin directory.  PGXS's PROGRAM cannot be
# combined with MODULE_big, hence these explicit rules.
WORKER_SRCS   = src/client/workflow_worker.c
WORKER_BINDIR = $(shell $(PG_CONFIG) --bindir)

workflow-worker: $(WORKER_SRCS)
	$(CC) $(CFLAGS) -Wall -Wextra -Werror -pthread \
		-I$(shell $(PG_CONFIG) --includedir) -o $@ $(WORKER_SRCS) \
		-L$(shell $(PG_CONFIG) --libdir) -lpq -pthread

all: workflow-worker

install: install-worker
install-worker: workflow-worker
	$(MKDIR_P) '$(DESTDIR)$(WORKER_BINDIR)'
	$(INSTALL_PROGRAM) workflow-worker '$(DESTDIR)$(WORKER_BINDIR)/workflow-worker'

uninstall: uninstall-worker
uninstall-worker:
	rm -f '$(DESTDIR)$(WORKER_BINDIR)/workflow-worker'

clean: clean-worker
clean-worker:
	rm -f workflow-worker

.PHONY: install-worker uninstall-worker clean-worker
