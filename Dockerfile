FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
# --omit=dev keeps tsx (a runtime dependency) and drops test tooling.
RUN npm ci --omit=dev && npm cache clean --force
COPY tsconfig.json ./
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
USER node
EXPOSE 2525 3000
# SIGTERM reaches node directly (no shell wrapper) so shutdown is graceful.
CMD ["node", "--import", "tsx", "src/main.ts"]
