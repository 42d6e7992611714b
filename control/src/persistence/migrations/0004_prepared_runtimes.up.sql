-- Prepared runtimes: what a version's sandbox.packages.apt, sandbox.runtimes and sandbox.setup
-- build, once per distinct setup. `digest` names the setup (its inputs and the organization), so
-- that versions with an unchanged setup share one runtime.
CREATE TABLE prepared_runtimes (
    digest TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    -- 'building', 'ready' or 'failed'.
    status TEXT NOT NULL,
    -- The version whose setup was built (the first to need it).
    version_id TEXT NOT NULL,
    -- The build's output, stdout and stderr interleaved, its last 256 KiB.
    log TEXT NOT NULL,
    -- Why a failed build failed.
    error TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT
);

-- Which prepared runtime a version uses.
CREATE TABLE version_runtimes (
    version_id TEXT PRIMARY KEY REFERENCES agent_versions (id),
    org_id TEXT NOT NULL REFERENCES organizations (id),
    digest TEXT NOT NULL
);
