DROP TABLE version_runtimes;
DROP TABLE prepared_runtimes;
