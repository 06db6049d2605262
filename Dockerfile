# One image for every Conveyor process; the command picks which (compose runs the API and the
# worker from it). Stages: deps (all dependencies) → build (tsc → dist/) → runtime (production
# dependencies and dist/ only, as the non-root `node` user).

FROM node:20-slim AS base
# package.json's "allowScripts" (which dependencies may run install scripts) is read by npm
# 11.16 and later; node:20 ships npm 10, which ignores it and would run every script.
ARG NPM_VERSION=11.19.1
RUN npm install --global "npm@${NPM_VERSION}" && npm cache clean --force
WORKDIR /app

FROM base AS deps
COPY package.json package-lock.json ./
# --strict-allow-scripts: a dependency with an install script that allowScripts does not
# cover fails the build instead of running; denied ones (false) are skipped.
RUN npm ci --strict-allow-scripts --no-audit --no-fund

FROM deps AS build
COPY . .
# tsc emits JavaScript only; db/migrate.js resolves ./migrations next to itself, so the build
# script copies the SQL and drizzle's meta/_journal.json beside it. test -f fails the build if not.
RUN npm run build \
  && test -f dist/db/migrations/meta/_journal.json \
  && test -f dist/api/server.js \
  && test -f dist/workers/main.js

FROM base AS runtime
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --strict-allow-scripts --no-audit --no-fund && npm cache clean --force
# Owned by root and read-only for the app: the processes write nothing to disk (file chunks
# live in the file store, logs go to stdout), but for the usage spool: the hits an API process
# acknowledges while Redis is down (USAGE_SPOOL_DIR, a volume in docker-compose.yml).
COPY --from=build /app/dist ./dist
RUN mkdir -p /var/lib/conveyor/spool && chown node:node /var/lib/conveyor/spool
USER node
EXPOSE 3000
CMD ["node", "dist/api/server.js"]
