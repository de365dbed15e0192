import type { NextConfig } from "next";

const config: NextConfig = {
  // The client is linked from ../../clients/typescript (a file: dependency).
  transpilePackages: ["@aijobs/client"],
};

export default config;
