// Signing in through the app's own pages, as a person would.

/** Sign in at /signin and wait until the sidebar names the user. */
export async function signInThroughUi(page, frontendUrl, username, password) {
  await page.goto(`${frontendUrl}/signin`);
  await page.getByLabel('Username', { exact: true }).fill(username);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.locator('.session').getByText(`@${username}`).waitFor();
}
