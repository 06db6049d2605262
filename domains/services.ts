// The only wiring of the domains: every domain's service, built once per process over the
// process's connections, each registered with shutdown so it closes (drains its batches, stops
// its threads) before the connections it uses. The API server, the worker entry, the dev start
// and the test context all call buildServices; handlers read `c.get("services")`, processors
// receive `services`.
import type { ShutdownRegistry } from "../lib/shutdown.js";
import { type AlertsService, createAlertsService } from "./alerts/service.js";
import type { DomainsConfig } from "./config.js";
import type { Connections } from "./connections.js";
import { createFilesService, type FilesService } from "./files/service.js";
import { createIdentityService, type IdentityService } from "./identity/service.js";
import { createNotificationsService, type NotificationsService } from "./notifications/service.js";
import { usesDevKdfSalt } from "./secrets/keys.js";
import { createSecretsService, type SecretsService } from "./secrets/service.js";
import { createUsageService, type UsageService } from "./usage/service.js";

export interface Services {
  alerts: AlertsService;
  files: FilesService;
  identity: IdentityService;
  notifications: NotificationsService;
  secrets: SecretsService;
  usage: UsageService;
}

export function buildServices(
  config: DomainsConfig,
  connections: Connections,
  shutdown: ShutdownRegistry,
): Services {
  const notifications = createNotificationsService(config, connections);
  const identity = createIdentityService(config, connections, { notifications });
  const services: Services = {
    alerts: createAlertsService(config, connections, { notifications }),
    files: createFilesService(config, connections),
    identity,
    notifications,
    secrets: createSecretsService(config, connections),
    usage: createUsageService(config, connections, { identity, notifications }),
  };
  for (const [name, service] of Object.entries(services))
    shutdown.register(`${name} service`, () => service.close());
  if (usesDevKdfSalt(config))
    connections.logger.warn(
      "SECRETS_KDF_SALT is unset: secrets stored and read here use the public development salt; set it",
    );
  return services;
}
