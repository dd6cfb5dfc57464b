#!/usr/bin/env perl
# examples/charge.pl: the payment step of the quick start, run by
# workflow-worker for every task of type "payment".
#
# Reads the task input (the job context) as JSON on stdin, "charges" the
# order's amount, and prints the task's output as JSON on stdout.  A
# non-zero exit fails the task; what it wrote to stderr becomes the error.
use strict;
use warnings;
use JSON::PP;

my $input = decode_json(do { local $/; <STDIN> });
my $params = $input->{job}{params};
my $amount = $params->{amount};

if ($amount > 500)
{
	print STDERR "card declined for order $params->{order}\n";
	exit 1;
}
print encode_json({ charged => $amount, order => $params->{order} + 0 }), "\n";
exit 0;
